"""Shape buckets: each case declares the ranges its shapes may take, and `--shapes N` runs
the declared shapes plus N-1 points drawn from them."""

from __future__ import annotations

import pytest
import torch

from crosscheck import registry
from crosscheck.cases.linear import _case as linear_case
from crosscheck.cli import main
from crosscheck.registry import Shapes
from crosscheck.session import run


def _shape_sets(case, n):
    return [tuple(t.shape for t in c.tensors) for _, c in registry.buckets(case, n)]


def test_buckets_are_reproducible_distinct_and_start_with_the_declared_shapes():
    case = registry.get("linear")
    first, again = registry.buckets(case, 6), registry.buckets(case, 6)
    assert first[0] == ("", case)
    assert [label for label, _ in first] == [label for label, _ in again]
    assert _shape_sets(case, 6) == _shape_sets(case, 6)
    labels = [label for label, _ in first[1:]]
    assert len(set(labels)) == len(labels) == 5
    assert all(label.startswith(f"shape bucket {k}: ") for k, label in enumerate(labels, 1))
    # bucket k does not depend on how many buckets run: `--shapes k+1` reproduces it
    assert _shape_sets(case, 3) == _shape_sets(case, 6)[:3]
    assert all(c.name == "linear" and c.shapes is None for _, c in first[1:])


def test_a_small_space_runs_out_of_buckets_instead_of_repeating():
    case = registry.get("linear").replace(shapes=Shapes(lambda n: linear_case("x", (n,), 2, 3), {"n": (1, 2)}))
    assert len(registry.buckets(case, 10)) == 3


def test_every_case_declares_shape_ranges_that_build_valid_cases():
    missing = [c.name for c in registry.all_cases() if c.shapes is None]
    assert not missing, f"cases without shape ranges: {missing}"
    for case in registry.all_cases():
        for _, bucket in registry.buckets(case, 3)[1:]:
            assert [t.name for t in bucket.tensors] == [t.name for t in case.tensors], case.name


class _SqueezeLinear(torch.autograd.Function):
    """A linear layer whose bias gradient calls `squeeze()`: right for any batch but 1, where
    the batch axis disappears and the sum runs over the features (autograd then broadcasts
    the scalar back to the bias's shape without complaint)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias):
        return x @ weight.T + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        return g @ weight, g.T @ x, g.squeeze().sum(0)


def _squeeze_case(batch):
    return linear_case("linear-squeeze", (batch,), 4, 5).replace(torch_fn=_SqueezeLinear.apply, torch_module=None, jax_module=None)


def test_a_bug_that_needs_batch_1_fails_in_its_bucket_only_and_names_it():
    case = _squeeze_case(3).replace(shapes=Shapes(_squeeze_case, {"batch": (1,)}))
    assert run(cases=[case], dtypes=["float64"], trials=2, shapes=1).passed
    report = run(cases=[case], dtypes=["float64"], trials=2, shapes=2)
    assert report.failures and {r.shape for r in report.failures} == {"shape bucket 1: batch=1"}
    checks = {r.check for r in report.failures}
    assert {"grad-contract", "grad", "grad-autodiff"} <= checks
    message = report.failures[0].message
    assert "  Shapes: shape bucket 1: batch=1" in message
    assert message.rstrip().endswith("--seed 0 --trials 2 --shapes 2")


def test_a_broken_shape_space_is_a_failed_check_and_the_declared_shapes_still_run():
    def build(n):
        raise ValueError(f"no case for n={n}")

    case = registry.get("sigmoid").replace(shapes=Shapes(build, {"n": (1,)}))
    report = run(cases=[case], dtypes=["float64"], trials=1, shapes=2)
    (setup,) = [r for r in report.failures]
    assert setup.check == "setup" and "ValueError: no case for n=1" in setup.message
    assert len(report.results) > 1 and all(r.passed for r in report.results if r.check != "setup")


def test_shapes_must_be_positive(capsys):
    assert main(["--layer", "sigmoid", "--shapes", "0"]) == 2
    assert "`--shapes` (=0) must be at least 1" in capsys.readouterr().err


def test_empty_range_is_refused():
    with pytest.raises(ValueError, match="`ranges` of n are empty"):
        Shapes(lambda n: None, {"n": ()})
