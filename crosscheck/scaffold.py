"""`python -m crosscheck new NAME`: the files of a new layer family, from working templates.

The templates implement `y = x * weight` end to end (autograd.Function, custom_vjp, modules,
a registered case, tests), so a new family starts from code that passes every check.

Two places take them, from the same templates with absolute imports: this repository
(`torch_layers/NAME.py`, `jax_layers/NAME.py`, `crosscheck/cases/NAME.py`,
`tests/test_layers_NAME.py`), or with `into` a folder of the user's own package, which gets
`torch_NAME.py`, `jax_NAME.py`, `NAME_cases.py` and `test_NAME.py`. There the imports name the
package as Python will import it (`_package`): the folder's name, after those of the folders
above it that hold an `__init__.py`; the first folder above without one must be on the path
(installed, or on `PYTHONPATH`).
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path

from .options import UsageError

FILES = {
    "torch_layer.py.tmpl": "torch_layers/{name}.py",
    "jax_layer.py.tmpl": "jax_layers/{name}.py",
    "cases.py.tmpl": "crosscheck/cases/{name}.py",
    "test_layers.py.tmpl": "tests/test_layers_{name}.py",
}
# The same templates, written into a folder of the user's package.
PACKAGE_FILES = {
    "torch_layer.py.tmpl": "torch_{name}.py",
    "jax_layer.py.tmpl": "jax_{name}.py",
    "cases.py.tmpl": "{name}_cases.py",
    "test_layers.py.tmpl": "test_{name}.py",
}


def _package(folder: Path) -> str:
    """The dotted name that `folder` imports as: its own name after those of the folders above
    it that hold an `__init__.py`."""
    folder = folder.resolve()
    parts = [folder.name]
    while (folder.parent / "__init__.py").is_file() and folder.parent != folder:
        folder = folder.parent
        parts.insert(0, folder.name)
    return ".".join(parts)


def _targets(name: str, root: str | Path, into: str | Path | None) -> tuple[dict[str, Path], dict[str, str]]:
    """Each template's file, and the modules the templates import (dotted names)."""
    if into is None:
        root = Path(root)
        targets = {tmpl: root / path.format(name=name) for tmpl, path in FILES.items()}
        missing = [str(p.parent) for p in targets.values() if not p.parent.is_dir()]
        if missing:
            raise UsageError(f"run `new` from the repository root, or give `--into`: {', '.join(sorted(set(missing)))} not found")
        return targets, {"torch_module": f"torch_layers.{name}", "jax_module": f"jax_layers.{name}",
                         "cases_module": f"crosscheck.cases.{name}"}
    folder = Path(into)
    if not folder.is_dir():
        raise UsageError(f"`--into` (={str(into)!r}) is not a directory")
    package = _package(folder)
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in package.split(".")):
        raise UsageError(f"`--into` (={str(into)!r}) imports as {package!r}, which is not a Python package name")
    from .registry import all_cases

    if name in {c.name for c in all_cases()} | {c.family for c in all_cases()}:
        raise UsageError(f"`NAME` (={name!r}) is taken by a case of crosscheck's own: choose another")
    targets = {tmpl: folder / path.format(name=name) for tmpl, path in PACKAGE_FILES.items()}
    return targets, {"torch_module": f"{package}.torch_{name}", "jax_module": f"{package}.jax_{name}",
                     "cases_module": f"{package}.{name}_cases"}


def scaffold(name: str, root: str | Path = ".", into: str | Path | None = None) -> list[Path]:
    """Write the family's four files under the repository `root`, or into the package folder
    `into` (see the module's docstring); refuses to overwrite anything."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise UsageError(f"`NAME` (={name!r}) must be a lowercase Python identifier, e.g. swiglu")
    camel = "".join(part.capitalize() for part in name.split("_"))
    targets, modules = _targets(name, root, into)
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing:
        raise UsageError(f"`NAME` (={name!r}) is taken: {', '.join(existing)} already exist")
    written = []
    for tmpl, path in targets.items():
        text = resources.files("crosscheck.templates").joinpath(tmpl).read_text()
        path.write_text(text.format(name=name, Camel=camel, **modules))
        written.append(path)
    return written


def next_step(name: str, into: str | Path | None = None) -> str:
    """What to run after `scaffold(name, into=into)` wrote the files."""
    if into is None:
        return f"next: python -m crosscheck --layer {name}   and   nox -s tests -- -k {name}"
    test = Path(into) / PACKAGE_FILES["test_layers.py.tmpl"].format(name=name)
    return f"next: python -m crosscheck --cases {_package(Path(into))}.{name}_cases --layer {name}   and   pytest {test}"
