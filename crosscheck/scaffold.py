"""`python -m crosscheck new NAME`: the files of a new layer family, from working templates.

The templates implement `y = x * weight` end to end (autograd.Function, custom_vjp, modules,
a registered case, tests), so a new family starts from code that passes every check.
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


def scaffold(name: str, root: str | Path = ".") -> list[Path]:
    """Write the family's four files under `root`; refuses to overwrite anything."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise UsageError(f"`NAME` (={name!r}) must be a lowercase Python identifier, e.g. swiglu")
    root = Path(root)
    camel = "".join(part.capitalize() for part in name.split("_"))
    targets = {tmpl: root / path.format(name=name) for tmpl, path in FILES.items()}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing:
        raise UsageError(f"`NAME` (={name!r}) is taken: {', '.join(existing)} already exist")
    missing = [str(p.parent) for p in targets.values() if not p.parent.is_dir()]
    if missing:
        raise UsageError(f"run `new` from the repository root: {', '.join(sorted(set(missing)))} not found")
    written = []
    for tmpl, path in targets.items():
        text = resources.files("crosscheck.templates").joinpath(tmpl).read_text()
        path.write_text(text.format(name=name, Camel=camel))
        written.append(path)
    return written
