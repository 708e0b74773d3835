"""JAX's configuration as a crosscheck run needs it: for the run only, or for good.

A run needs `jax_enable_x64` (the float64 checks) and keeps compiled programs in a persistent
compilation cache, in the folder that `CROSSCHECK_JAX_CACHE` names (default
`~/.cache/crosscheck/jax`; set it empty to turn the cache off). `configured()` sets these for a
`with` block and puts back what it found, so a run from a user's Python process leaves their
JAX as it was; `configure()` sets them for good.

Putting the cache folder back is not enough on its own: JAX builds its cache object once, from
the folder set when it first compiles (`compilation_cache._initialize_cache`), and keeps it
and its "is the cache used" answer after the setting changes; with the folder unset again,
every later program of the user's would still be written into crosscheck's folder. So where the
folder changes, JAX's cache is reset (`compilation_cache.reset_cache()`, public in
`jax.experimental.compilation_cache`) on the way in and on the way out.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

import jax

# Every setting `_apply` may change, put back by `configured`.
SETTINGS = (
    "jax_enable_x64",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def cache_folder() -> str:
    return os.environ.get("CROSSCHECK_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "crosscheck", "jax"))


def configure() -> None:
    """JAX as a crosscheck run needs it, for good: float64 on and the persistent compilation
    cache (`_apply`). Calling it again changes nothing."""
    _apply()


@contextlib.contextmanager
def configured():
    """JAX as a crosscheck run needs it inside the block, and as it was after it."""
    undo = _apply()
    try:
        yield
    finally:
        undo()


def _apply() -> Callable[[], None]:
    """Turn on float64 and the persistent cache; returns what puts back what this changed.

    Every program is kept (no minimum compile time or size): the harness's programs are many
    and small. A folder the user set (`jax_compilation_cache_dir`) wins over ours.
    """
    saved = {name: getattr(jax.config, name) for name in SETTINGS}
    jax.config.update("jax_enable_x64", True)
    folder = cache_folder()
    unguard = None
    if folder and not saved["jax_compilation_cache_dir"]:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        from .unreadable import guard_jax_cache

        unguard = guard_jax_cache(folder)  # an entry it cannot read is a miss, replaced (see unreadable)
        _reset_cache()  # a cache JAX built before, without a folder or with another one

    def undo() -> None:
        for name, value in saved.items():
            if getattr(jax.config, name) != value:
                jax.config.update(name, value)
        if folder and not saved["jax_compilation_cache_dir"]:
            if unguard is not None:
                unguard()
            _reset_cache()  # JAX's cache object still writes into our folder

    return undo


def _reset_cache() -> None:
    try:
        from jax.experimental.compilation_cache.compilation_cache import reset_cache
    except ImportError:  # a JAX that moved it: its cache stays as it was built
        return
    reset_cache()
