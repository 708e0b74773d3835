"""Cases from outside this repository: modules named by `--cases`, and installed packages'
entry points in the group `crosscheck.cases`.

A module registers its cases when imported (`crosscheck.register(...)` at its top level). Each
case remembers that module (`Case.origin`), so that a failure's `Reproduce:` line imports it
again (`--cases MODULE`) and every `--jobs` shard does too.
"""

from __future__ import annotations

import functools
import importlib
import sys
from importlib import metadata

GROUP = "crosscheck.cases"

# Modules that hold the built-in cases: the registry imports them itself.
BUILT_IN = "crosscheck.cases"


def load(modules: list[str] | None) -> None:
    """Import each module of `modules` (dotted names), which registers its cases."""
    for name in modules or []:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ValueError(f"`--cases` (={name!r}) could not be imported: {type(e).__name__}: {e}") from None


@functools.cache  # once per process; a failure is not cached, and raises again
def load_entry_points() -> None:
    """Import every module that an installed package declares in the group `crosscheck.cases`
    (`[project.entry-points."crosscheck.cases"] mine = "mypkg.crosscheck_cases"`)."""
    for ep in metadata.entry_points(group=GROUP):
        try:
            ep.load()
        except Exception as e:  # name the package's entry point, not only the import error
            raise ValueError(f"entry point {ep.name!r} (={ep.value!r}) of group {GROUP!r} failed: {type(e).__name__}: {e}") from e


def origin() -> str:
    """The module whose top-level code is running the caller (the module being imported that
    registers a case); "" for the built-in cases and where no importable module is (a case
    registered inside a function of a script or a test)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    name = "" if frame is None else frame.f_globals.get("__name__", "")
    if name == "__main__" or name == BUILT_IN or name.startswith(BUILT_IN + "."):
        return ""
    return name
