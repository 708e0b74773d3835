"""The code has no unused or undefined names and no syntax errors (ruff's pyflakes rules,
configured in pyproject.toml): an import left behind by a move is a dependency that is not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = ["crosscheck", "torch_layers", "jax_layers", "tests", "scripts", "examples", "noxfile.py"]


def ruff() -> list[str]:
    found = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: it comes with the `test` extra (pip install -e '.[test]')")
    return [found]


def test_no_pyflakes_findings():
    done = subprocess.run([*ruff(), "check", "--output-format", "concise", "--no-cache", *CODE],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint_fails_on_an_unused_import(tmp_path):
    # The check can fail: the same configuration flags a file with an unused import.
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    done = subprocess.run([*ruff(), "check", "--output-format", "concise", "--no-cache",
                           "--config", os.path.join(ROOT, "pyproject.toml"), str(bad)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "F401" in done.stdout, done.stdout + done.stderr
