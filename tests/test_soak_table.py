"""scripts/soak_table.py: the soak's table from `--json` reports, and `--target`'s verdict."""

from __future__ import annotations

import json

import pytest

from scripts.soak_table import main


def _check(layer, dtype, check, tensor, ratio, passed=True, shape=""):
    return {"layer": layer, "dtype": dtype, "check": check, "tensor": tensor, "ratio": ratio,
            "passed": passed, "shape": shape}


def _write(tmp_path, name, checks):
    path = tmp_path / name
    path.write_text(json.dumps({"seed": "0:2", "checks": checks}))
    return str(path)


@pytest.fixture
def reports(tmp_path):
    """Two reports read together: float32's worst gradient is in the second one."""
    a = _write(tmp_path, "a.json", [
        _check("gelu", "float32", "forward", "output", 0.21),
        _check("gelu", "float32", "grad-module", "grad of input", 0.12),
        _check("gelu", "float16", "forward-reference", "output", 0.3),
        _check("gelu", "float16", "grad-contract", "", None),
    ])
    b = _write(tmp_path, "b.json", [
        _check("conv_block", "float32", "grad-autodiff", "grad of weight", 0.44, shape="shape bucket 2: batch=1"),
        _check("conv_block", "float32", "hvp", "hvp of weight", "nan"),
        _check("conv_block", "float16", "forward", "output", 0.1),
    ])
    return [a, b]


def test_the_table_has_each_dtypes_counts_and_worst_ratio_with_its_case(reports, capsys):
    assert main(reports) == 0
    out = capsys.readouterr().out
    assert "| float32 | 4 | 0 | 0.21 | 0.44 | - | - |" in out
    assert "| float16 | 3 | 0 | 0.30 | - | - | - |" in out
    assert out.index("| float32 |") < out.index("| float16 |")
    assert "float32 gradients: 0.440 at conv_block grad-autodiff grad of weight [shape bucket 2: batch=1]" in out
    assert "float16 values: 0.300 at gelu forward-reference output" in out


@pytest.mark.parametrize("target, code", [(0.5, 0), (0.44, 1), (0.3, 1), (0.2, 1)])
def test_target_fails_where_a_worst_ratio_reaches_it(reports, capsys, target, code):
    assert main(["--target", str(target), *reports]) == code
    out = capsys.readouterr().out
    _, said, named = out.partition("At or above the target")
    assert bool(said) == bool(code)
    assert ("float32 gradients: 0.440 at conv_block" in named) == (target <= 0.44)
    assert ("float16 values: 0.300 at gelu" in named) == (target <= 0.3)
    assert "float32 values" not in named or target <= 0.21


def test_target_fails_where_a_check_failed_even_one_without_a_ratio(tmp_path, capsys):
    path = _write(tmp_path, "r.json", [
        _check("linear", "float64", "forward", "output", 0.1),
        _check("linear", "float64", "grad-contract", "", None, passed=False),
    ])
    assert main([path]) == 0
    assert "| float64 | 2 | 1 | 0.10 |" in capsys.readouterr().out
    assert main(["--target", "0.5", path]) == 1
    assert "float64: 1 checks failed" in capsys.readouterr().out


@pytest.mark.parametrize("args", [[], ["--target", "0", "r.json"], ["--target", "half", "r.json"]])
def test_usage_errors_exit_2(args, capsys):
    assert main(args) == 2
