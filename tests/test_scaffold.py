"""`python -m crosscheck new NAME` writes a family that passes its own checks and tests, in this
repository or (`--into DIR`) in a package of the user's own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _env(path: Path) -> dict:
    """This process's environment, importing from `path` and this checkout."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(REPO)])}


def test_new_into_a_package_passes_every_check_and_its_tests_there(tmp_path, capsys):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    assert main(["new", "swiglu2", "--into", str(pkg)]) == 0
    assert "--cases pkg.swiglu2_cases --layer swiglu2" in capsys.readouterr().out
    written = sorted(p.name for p in pkg.iterdir())
    assert written == ["jax_swiglu2.py", "swiglu2_cases.py", "test_swiglu2.py", "torch_swiglu2.py"]
    for path in pkg.iterdir():  # absolute imports only: the package is not crosscheck's
        assert not re.search(r"^\s*from \.", path.read_text(), re.M), path
    assert "from pkg.torch_swiglu2 import swiglu2" in (pkg / "test_swiglu2.py").read_text()
    cmd = [sys.executable, "-m", "crosscheck", "--cases", "pkg.swiglu2_cases", "--layer", "swiglu2",
           "--dtype", "float64", "--dtype", "float32"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^[1-9]\d* passed, 0 failed \(2 case x dtype runs", done.stdout, re.M), done.stdout
    # From elsewhere, as a user's CI runs it; `no:crosscheck`: a checkout's metadata on the path
    # would register the plugin a second time.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:crosscheck",
                            str(pkg / "test_swiglu2.py")], cwd=REPO / "examples", env=_env(tmp_path),
                           capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout + tests.stderr


def test_new_into_names_a_nested_package_by_its_folders(tmp_path):
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    (tmp_path / "outer" / "__init__.py").write_text("")
    assert main(["new", "scale2", "--into", str(inner)]) == 0
    cases = (inner / "scale2_cases.py").read_text()
    assert "from outer.inner.torch_scale2 import scale2 as layer" in cases
    assert "from crosscheck import Case, Tensor, register" in cases


@pytest.mark.parametrize("into, error", [
    ("missing", "`--into` (={!r}) is not a directory"),
    ("a_file.py", "`--into` (={!r}) is not a directory"),
    ("my-pkg", "`--into` (={!r}) imports as 'my-pkg', which is not a Python package name"),
])
def test_new_into_refuses_what_is_not_a_package_folder(tmp_path, capsys, into, error):
    (tmp_path / "a_file.py").write_text("")
    (tmp_path / "my-pkg").mkdir()
    assert main(["new", "scale2", "--into", str(tmp_path / into)]) == 2
    assert error.format(str(tmp_path / into)) in capsys.readouterr().err


def test_new_into_refuses_taken_names_and_files(tmp_path, capsys):
    assert main(["new", "linear", "--into", str(tmp_path)]) == 2
    assert "`NAME` (='linear') is taken by a case of crosscheck's own" in capsys.readouterr().err
    (tmp_path / "jax_scale2.py").write_text("# the user's own\n")
    assert main(["new", "scale2", "--into", str(tmp_path)]) == 2
    assert f"{tmp_path / 'jax_scale2.py'} already exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jax_scale2.py"]  # nothing written
    assert main(["new", "Bad-Name", "--into", str(tmp_path)]) == 2
    assert "`NAME` (='Bad-Name')" in capsys.readouterr().err


def test_new_help_documents_into(capsys):
    assert main(["new", "--help"]) == 0
    assert "--into DIR" in capsys.readouterr().out
