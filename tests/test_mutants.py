"""The harness catches planted backward bugs, in the check one would expect."""

from __future__ import annotations

import re

import numpy as np

import pytest

from crosscheck.mutants import all_mutants
from crosscheck.mutants._core import FORWARD_CHECKS
from crosscheck.mutants._run import Verdict, format_table, passed, run_mutants

MUTANTS = all_mutants()

HEAD = re.compile(r"^FAILED (?P<case>\S+) / (?P<dtype>\w+) / cpu / (?P<check>[\w-]+) / .+ \(.+\)$")
REPRO = re.compile(r"^  Reproduce: python -m crosscheck mutants --only (?P<name>\S+) --dtype float64 --device cpu --seed 0 --trials 2$")


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_killed_by_the_expected_check(mutant):
    (verdict,) = run_mutants([mutant], dtypes=["float64"], device="cpu", trials=2, seed=0)
    assert verdict.killed, f"{mutant.name} survived every check"
    assert set(verdict.failed_checks) & set(mutant.expect), (
        f"{mutant.name} was killed by {verdict.failed_checks}, expected one of {mutant.expect}"
    )
    stray = [c for c in verdict.failed_checks if c in FORWARD_CHECKS and c not in mutant.expect]
    assert not stray, f"a backward bug failed forward checks {stray}"
    for message in verdict.messages:
        lines = message.splitlines()
        head = HEAD.match(lines[0])
        assert head and head["case"] == mutant.case, lines[0]
        repro = REPRO.match(lines[-1])
        assert repro and repro["name"] == mutant.name, lines[-1]


def _messages(name):
    (mutant,) = [m for m in MUTANTS if m.name == name]
    (verdict,) = run_mutants([mutant])
    return verdict.messages


def test_value_mismatch_message_has_the_fixed_shape():
    (msg,) = [m for m in _messages("linear/input-grad-sign") if "/ grad / grad of input (torch vs jax)" in m]
    lines = msg.splitlines()
    assert lines[0] == "FAILED linear / float64 / cpu / grad / grad of input (torch vs jax)"
    assert re.fullmatch(r"  Mismatched elements: \d+ / 56 \(\d+\.\d%\)", lines[1]), lines[1]
    assert re.fullmatch(r"  Greatest absolute difference: \S+ at index \(trial \d, \d, 0, \d\) \(up to \S+ allowed there\)", lines[2]), lines[2]
    assert re.fullmatch(r"  Greatest relative difference: \S+ at index \(trial \d, \d, 0, \d\)", lines[3]), lines[3]
    assert re.fullmatch(
        r"  Greatest difference / allowed: \S+ at index \(trial \d, \d, 0, \d\) "
        r"\(expected \S+, actual \S+, up to \S+ allowed there\)", lines[4]
    ), lines[4]


def test_shape_mismatch_and_raising_backward_are_named():
    msgs = "\n".join(_messages("linear/weight-grad-transposed"))
    assert "MutantLinearFunction.backward gradient 1: shape (7, 5) torch.float64, input has shape (5, 7)" in msgs
    msgs = "\n".join(_messages("linear/backward-raises"))
    assert "RuntimeError: planted: backward not implemented" in msgs


def test_broadcast_gradient_is_caught_only_by_the_raw_contract():
    msgs = _messages("linear/bias-grad-not-summed")
    assert len(msgs) == 1 and "/ grad-contract /" in msgs[0]
    assert "gradient 2: shape (4, 1, 5) torch.float64, input has shape (5,)" in msgs[0]


@pytest.mark.parametrize("name", ["gelu-tanh/cubic-constant-both-ways", "linear/bias-subtracted-both-ways"])
def test_consistent_porting_errors_pass_gradcheck_but_not_the_harness(name):
    """The bug gradcheck/check_grads cannot see: forward and backward wrong together."""
    (mutant,) = [m for m in MUTANTS if m.name == name]
    case = mutant.apply()
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(t.shape) for t in case.tensors]
    if mutant.side == "torch":
        import torch

        t_args = tuple(torch.tensor(a, requires_grad=True) for a in args)
        assert torch.autograd.gradcheck(mutant.fn, t_args)
    else:
        import jax.numpy as jnp
        from jax.test_util import check_grads

        check_grads(mutant.fn, tuple(jnp.asarray(a) for a in args), order=2, modes=["rev"])
    (verdict,) = run_mutants([mutant])
    assert {"forward", "forward-reference"} <= set(verdict.failed_checks)


def test_a_mutant_runs_only_at_the_declared_shapes():
    """A mutant's function closes over its case's declared options; drawn buckets rebuild the
    case with the correct functions, so they would report the unmutated layer as the mutant."""
    from crosscheck.registry import buckets, get

    mutant = next(m for m in MUTANTS if get(m.case).shapes is not None)
    assert len(buckets(get(mutant.case), 3)) == 3
    [(label, case)] = buckets(mutant.apply(), 3)
    assert label == "" and case.selector == f"mutants --only {mutant.name}"


def test_each_dtype_is_judged_on_its_own(capsys):
    """A detached backward is seen only by the second-order checks, which low precision does
    not run: killed in float64, a survivor for a user who trains only in bfloat16."""
    from crosscheck.cli import main

    name = "linear/backward-detached"
    f64, bf16 = run_mutants([m for m in MUTANTS if m.name == name], dtypes=["bfloat16", "float64"])
    assert (f64.dtype, bf16.dtype) == ("float64", "bfloat16")  # in the registry's order
    assert f64.as_expected and f64.failed_checks[0] == "hvp"
    assert not bf16.killed
    assert passed([f64, bf16]) and not passed([bf16])
    table = format_table([f64, bf16])
    assert f"not killed as expected in bfloat16: {name}" in table.splitlines()
    assert "not killed as expected in float64" not in table

    assert main(["mutants", "--only", name, "--dtype", "bfloat16"]) == 1
    assert main(["mutants", "--only", name, "--dtype", "float8"]) == 2
    assert "Unknown dtype: 'float8'" in capsys.readouterr().err


def test_a_kill_by_an_unexpected_check_fails_the_run_in_any_dtype():
    mutant = next(m for m in MUTANTS if m.expect == ("grad", "grad-autodiff", "finite-diff"))
    right = Verdict(mutant, "float64", ["grad"], [])
    stray = Verdict(mutant, "float16", ["forward", "grad"], [])
    assert passed([right]) and not passed([right, stray])
    assert "UNEXPECTED forward +1" in format_table([right, stray])
