"""Cases from outside this repository: `--cases MODULE`, the `crosscheck.cases` entry points,
`--jobs` shards and `Reproduce:` lines that import them (the example in examples/own_layer)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crosscheck.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_layer" / "src"
MODULE = "softsign_layers.crosscheck_cases"
# The example's torch backward, and the same with a planted bug (the square dropped).
BACKWARD = "return grad_output / (1 + x.abs()) ** 2"
PLANTED = "return grad_output / (1 + x.abs())"


def crosscheck(args: list[str], path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m crosscheck ARGS` in a fresh process that imports from `path` and this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "crosscheck", *args], capture_output=True, text=True,
                          env=env, cwd=path, timeout=timeout)


@pytest.fixture
def planted(tmp_path) -> Path:
    """A copy of the example's package whose torch backward has a planted bug."""
    shutil.copytree(EXAMPLE / "softsign_layers", tmp_path / "softsign_layers")
    layer = tmp_path / "softsign_layers" / "torch_softsign.py"
    text = layer.read_text()
    assert BACKWARD in text
    layer.write_text(text.replace(BACKWARD, PLANTED))
    return tmp_path


def test_an_unknown_module_is_a_usage_error(capsys):
    assert main(["--cases", "no_such_module_here", "--list"]) == 2
    assert "`--cases` (='no_such_module_here') could not be imported" in capsys.readouterr().err


def test_jobs_shards_load_the_cases_and_the_reproduce_line_reproduces(planted):
    fast = ["--dtype", "float64", "--trials", "2", "--shapes", "1", "--device", "cpu"]
    run = crosscheck(["--cases", MODULE, "--layer", "softsign", *fast, "--jobs", "2"], planted)
    assert run.returncode == 1, run.stdout + run.stderr
    failed = "FAILED softsign / float64 / cpu / grad-autodiff / grad of input (torch autodiff vs torch custom)"
    assert failed in run.stdout
    repro = re.findall(r"Reproduce: (python -m crosscheck .*)", run.stdout)
    assert repro and set(repro) == {f"python -m crosscheck --cases {MODULE} --layer softsign --dtype float64 "
                                    f"--device cpu --seed 0 --trials 2"}
    again = crosscheck(shlex.split(repro[0])[3:], planted)
    assert again.returncode == 1 and failed in again.stdout


def test_an_installed_packages_entry_point_lists_its_cases(tmp_path):
    # What `pip install` of the example writes for its entry point, without installing it.
    shutil.copytree(EXAMPLE / "softsign_layers", tmp_path / "softsign_layers")
    info = tmp_path / "softsign_layers-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: softsign-layers\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[crosscheck.cases]\nsoftsign = {MODULE}\n")
    listed = crosscheck(["--list"], tmp_path, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^softsign\s+softsign\s+x \(3, 1, 5\)$", listed.stdout, re.M)
    without = crosscheck(["--list"], EXAMPLE.parent / "tests", timeout=120)
    assert "softsign" not in without.stdout


def pytest_run(args: list[str], path: Path) -> subprocess.CompletedProcess:
    """pytest in a fresh process, with the plugin, importing from `path` and this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)])}
    # `no:crosscheck`: where a build left this checkout's metadata (crosscheck_grads.egg-info)
    # on the path, its entry point would register the same plugin a second time.
    plugin = ["-p", "no:crosscheck", "-p", "crosscheck.pytest_plugin"]
    return subprocess.run([sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, env=env, cwd=path, timeout=600)


@pytest.mark.parametrize("bug", [False, True], ids=["as written", "planted bug"])
def test_the_pytest_plugin_makes_one_item_per_case_and_dtype(planted, bug):
    if not bug:
        layer = planted / "softsign_layers" / "torch_softsign.py"
        layer.write_text(layer.read_text().replace(PLANTED, BACKWARD))
    shutil.copytree(EXAMPLE.parent / "tests", planted / "tests")
    fast = ["--crosscheck-trials", "2", "--crosscheck-shapes", "1", "-k", "test_crosscheck and (float64 or bfloat16)"]
    run = pytest_run(["-v", "-rN", "tests/test_softsign.py", *fast], planted)
    out = run.stdout
    ids = re.findall(r"test_softsign.py::test_crosscheck\[(\S+)\] (PASSED|FAILED)", out)
    assert sorted(ids) == [("softsign-bfloat16", "FAILED" if bug else "PASSED"), ("softsign-float64", "FAILED" if bug else "PASSED")], out
    assert run.returncode == (1 if bug else 0)
    if bug:  # the command line's text, and a Reproduce: line that imports the cases
        assert "FAILED softsign / float64 / cpu / grad-autodiff / grad of input (torch autodiff vs torch custom)" in out
        assert f"Reproduce: python -m crosscheck --cases {MODULE} --layer softsign --dtype float64 --device cpu --seed 0 --trials 2" in out
