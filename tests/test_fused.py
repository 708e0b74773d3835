"""A case run's JAX programs run as one compiled program, with the same results as alone."""

from __future__ import annotations

import dataclasses

import pytest

from crosscheck import adapters, registry
from crosscheck.registry import LOW_PRECISION
from crosscheck.adapters.jax_adapter import MANY_TRIALS, JaxAdapter
from crosscheck.frameworks._jax import JaxSide
from crosscheck.runner import CaseRun


@pytest.fixture(scope="module")
def sides():
    return adapters.get("torch"), adapters.get("jax")


def _counted(monkeypatch):
    """Counts the compiled programs that the JAX side runs."""
    calls = []
    real = JaxAdapter._call
    monkeypatch.setattr(JaxAdapter, "_call", lambda self, program, *a: calls.append(program) or real(self, program, *a))
    return calls


def _results(case, sides, dtype="float64", trials=3):
    run = CaseRun(case, dtype, "cpu", trials, 0, *sides)
    return [(r.check, r.tensor, r.compared, r.passed, r.max_abs_err, r.message) for r in run.run()]


@pytest.mark.parametrize(
    "name, dtype, trials",
    # Many trials compile with options of their own, which only a top-level jit takes.
    [("linear", "float64", 3), ("lstm_cell", "float32", 3), ("batch_norm", "bfloat16", 3), ("relu", "float64", MANY_TRIALS)],
)
def test_every_jax_stage_comes_from_one_program_with_the_results_it_gives_alone(name, dtype, trials, sides, monkeypatch):
    case = registry.select([name])[0]
    calls = _counted(monkeypatch)
    fused = _results(case, sides, dtype, trials)
    # vjps, forwards (and shifted ones), module, hvps: one program; beside it the rounding
    # model's, of the reference and the custom function (VJPs, and Hessian products where
    # they are checked), which serve every dtype and so are not fused with one dtype's.
    hvps = case.second_order and dtype not in LOW_PRECISION
    assert len(calls) == 1 + 2 * (1 + hvps)
    calls.clear()
    monkeypatch.setattr(JaxSide, "_fuse", lambda self, plan, inputs: {})
    alone = _results(case, sides, dtype, trials)
    assert len(calls) >= 4
    assert fused == alone and all(r[3] for r in fused)


def test_a_stage_that_fails_fails_alone_and_the_others_still_pass(sides, monkeypatch):
    case = registry.select(["linear"])[0]

    def broken_reference(*args):
        raise ValueError("the reference is broken")

    broken = dataclasses.replace(case, jax_ref=broken_reference)
    calls = _counted(monkeypatch)
    results = CaseRun(broken, "float64", "cpu", 3, 0, *sides).run()
    assert len(calls) > 1  # the fused program failed, so each stage ran its own
    failed = {(r.check, r.compared) for r in results if not r.passed}
    assert failed == {
        ("forward-reference", "jax custom vs reference"),
        ("grad-autodiff", "jax custom vs autodiff"),
        ("hvp-autodiff", "jax autodiff vs jax custom"),
    }
    assert all("ValueError: the reference is broken" in r.message for r in results if not r.passed)
