"""`python -m crosscheck new NAME` writes a family that passes its own checks and tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from crosscheck.cli import main

REPO = Path(__file__).resolve().parents[1]


def _copy_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for pkg in ("crosscheck", "torch_layers", "jax_layers", "tests"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__", "test_*.py"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_new_family_passes_the_crosscheck_and_its_tests(tmp_path):
    root = _copy_repo(tmp_path)
    assert main(["new", "scale", "--root", str(root)]) == 0
    for path in ("torch_layers/scale.py", "jax_layers/scale.py", "crosscheck/cases/scale.py", "tests/test_layers_scale.py"):
        assert (root / path).is_file(), path
    env_cmd = [sys.executable, "-m", "crosscheck", "--layer", "scale", "--device", "cpu", "--trials", "2",
               "--dtype", "float64", "--dtype", "bfloat16"]
    done = subprocess.run(env_cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_layers_scale.py"],
                           cwd=root, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_new_refuses_bad_or_taken_names(tmp_path, capsys):
    root = _copy_repo(tmp_path)
    assert main(["new", "Bad-Name", "--root", str(root)]) == 2
    assert "`NAME` (='Bad-Name')" in capsys.readouterr().err
    assert main(["new", "linear", "--root", str(root)]) == 2
    assert "already exist" in capsys.readouterr().err
