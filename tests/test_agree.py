"""`crosscheck.check` / `assert_agree`: one call, with both frameworks or one, with or without
references (the example's softsign, and the same with a planted backward bug)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import crosscheck

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "own_layer" / "src"))
from softsign_layers.jax_softsign import softsign as jax_softsign  # noqa: E402
from softsign_layers.torch_softsign import SoftsignFunction, softsign as torch_softsign  # noqa: E402

SHAPE = [(3, 1, 5)]


class Planted(SoftsignFunction):
    """softsign whose backward forgets the square: `dy/dx = 1 / (1 + |x|)`."""

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output / (1 + x.abs())


def test_both_sides_with_references_pass_every_check():
    import jax

    report = crosscheck.assert_agree(torch_softsign, jax_softsign, inputs=SHAPE, torch_ref=torch.nn.functional.softsign,
                                     jax_ref=jax.nn.soft_sign, dtypes=["float64", "bfloat16"], trials=2)
    checks = {(r.dtype, r.check) for r in report.results}
    assert {("float64", c) for c in ("forward", "grad", "grad-autodiff", "finite-diff", "hvp", "hvp-autodiff")} <= checks
    assert ("bfloat16", "grad") in checks and report.not_run == []


def test_torch_alone_runs_its_checks_and_lists_the_rest():
    report = crosscheck.check(torch_softsign, inputs=SHAPE, torch_ref=torch.nn.functional.softsign,
                              dtypes=["float64", "float16"], trials=2)
    assert report.passed, crosscheck.agree.describe(report)
    got = {(r.dtype, r.check, r.compared) for r in report.results}
    assert ("float64", "grad-contract", "torch Function.backward") in got
    assert ("float64", "finite-diff", "central difference vs torch custom") in got
    assert ("float64", "hvp-autodiff", "torch autodiff vs torch custom") in got
    assert ("float16", "grad", "float64 oracle vs torch") in got
    assert not any("jax" in r.compared for r in report.results)
    assert "grad (torch vs jax): no JAX function given [float64, float16]" in report.not_run


def test_a_planted_bug_fails_with_the_clis_text_on_either_side_alone():
    with pytest.raises(AssertionError) as e:
        crosscheck.assert_agree(Planted.apply, inputs=SHAPE, dtypes=["float64"], trials=2, name="softsign")
    text = str(e.value)
    assert "FAILED softsign / float64 / cpu / finite-diff / directional derivative (central difference vs torch custom)" in text
    assert "Reproduce: crosscheck.check(..., name='softsign', dtypes=['float64'], device='cpu', seed=0, trials=2)" in text
    assert "not run:" in text and "no JAX function given" in text


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(inputs=SHAPE), "`torch_fn` and `jax_fn` are both None"),
        (dict(jax_fn=jax_softsign, torch_ref=torch.nn.functional.softsign, inputs=SHAPE), "`torch_ref` (="),
        (dict(torch_fn=torch_softsign, inputs=[(3, "a")]), "`inputs` (=[(3, 'a')]): 'input' must be a shape"),
        (dict(torch_fn=torch_softsign, inputs=SHAPE, layouts={"x": None}), "`layouts` (=['x']) names no input"),
        (dict(torch_fn=torch_softsign, inputs=SHAPE, dtypes=["float8"]), "Unknown dtype: 'float8'"),
    ],
)
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError) as e:
        crosscheck.check(**kwargs)
    assert words in str(e.value)


@pytest.mark.parametrize("both", [True, False], ids=["both", "torch-alone"])
def test_a_correct_layer_with_long_sums_passes(both):
    # A float32 linear layer of 512 inputs: its sums are rounded after every term, and a model
    # that rounded them once at the end failed torch vs JAX (1.39 times the allowance with 256
    # inputs, 3.30 with 4096: docs/tolerances.md, "Long sums"); torch alone passed either way.
    import torch.nn.functional as F

    from crosscheck.layout import TRANSPOSE
    from jax_layers.linear import linear as jax_linear
    from torch_layers.linear import LinearFunction

    jax_side = dict(jax_fn=lambda x, k, b: jax_linear(x, k, b), jax_ref=lambda x, k, b: x @ k + b) if both else {}
    report = crosscheck.check(LinearFunction.apply, inputs=[(16, 512)], params=[(8, 512), (8,)], torch_ref=F.linear,
                              layouts={"param0": TRANSPOSE}, dtypes=["float32"], trials=8, **jax_side)
    assert report.passed, crosscheck.agree.describe(report)
