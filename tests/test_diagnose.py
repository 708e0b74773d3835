"""Each diagnosis hint appears under the failure of a mutant that produces it."""

from __future__ import annotations

import pytest

from crosscheck.diagnose import shape_hint
from crosscheck.mutants import all_mutants
from crosscheck.mutants._run import run_mutants

HINTS = [
    ("linear/weight-grad-transposed", "grad-contract", "Hint: looks like the transpose of the expected gradient"),
    ("linear/bias-grad-not-summed", "grad-contract", "Hint: missing a sum over axes (0, 1): the primal was broadcast there"),
    ("linear/input-grad-doubled", "grad-autodiff", "Hint: scaled by a constant: torch custom = 2 x torch autodiff"),
    ("linear/input-grad-doubled", "grad", "Hint: scaled by a constant: jax = 0.5 x torch"),
    ("linear/input-grad-sign", "grad", "Hint: sign-flipped: jax = -torch"),
    ("linear/kernel-grad-zero", "grad", "Hint: jax is all zeros"),
    ("linear/input-grad-nan", "grad-autodiff", "Hint: jax custom has NaN/Inf where jax autodiff is finite"),
    ("linear/input-grad-last-row-dropped", "grad", "Hint: matches except on 14 of 56 elements, first at (trial 0, 3, 0, 0)"),
]


@pytest.mark.parametrize("name,check,hint", HINTS, ids=[f"{h[0]}-{h[1]}" for h in HINTS])
def test_hint_under_the_failure(name, check, hint):
    (mutant,) = [m for m in all_mutants() if m.name == name]
    (verdict,) = run_mutants([mutant])
    messages = [m for m in verdict.messages if f"/ {check} /" in m]
    assert messages, f"{name} did not fail {check}: {verdict.failed_checks}"
    assert any(hint in m for m in messages), "\n\n".join(messages)


def test_shape_hints_stay_quiet_when_nothing_fits():
    assert shape_hint((3, 4), (3, 4)) is None
    assert shape_hint((3, 4), (5, 6)) is None
