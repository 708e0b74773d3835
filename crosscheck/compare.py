"""The one comparator: every check in the harness goes through `compare`.

Arrays arrive as numpy (float64 or integer) with a leading trial axis. An element passes when
`|actual - expected| <= allowed`, `allowed` being one number per element: for values,
gradients and Hessian products, `allowance` sizes it from how sensitive that element is to the
rounding of the dtype under test (measured by the JAX adapter in float64 on the reference,
`jax_requests.rounding`; see docs/tolerances.md). NaN (and inf) must appear in the same places on both
sides: nothing is replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .diagnose import hints_under, shape_hint, value_hints

# Unit roundoff per dtype (half the gap between 1 and the next float).
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}

# The smallest normal number per dtype. Below it a result is subnormal and is rounded to a
# fixed grid: its error is up to `UNIT_ROUNDOFF * SMALLEST_NORMAL` however small it is (float16
# gradients of about 1e-6 erred by 0.43 of float16's subnormal spacing, 20 times `u |z|`).
SMALLEST_NORMAL = {"float64": 2.0**-1022, "float32": 2.0**-126, "bfloat16": 2.0**-126, "float16": 2.0**-14}

# The dtype that sums accumulate in: both frameworks accumulate low-precision reductions
# (sums, matrix products, convolutions) in float32.
ACCUMULATION = {"float64": "float64", "float32": "float32", "bfloat16": "float32", "float16": "float32"}

# An element's allowance is BUDGET times its rounding error's spread (`allowance`), for
# each side that computed in the dtype under test. The spread is a standard deviation, and the
# largest of many errors lies several of them out: BUDGET is set from the soak in
# docs/tolerances.md so that the worst error of any check stays below half its allowance.
BUDGET = 16.0

# Each trial's allowances are raised by PER_TRIAL_FLOOR times their own root-mean-square: an
# element's spread is estimated from a few draws (`SPREAD_DRAWS`), and an estimate can come out
# far below the truth where the element's error has few sources.
PER_TRIAL_FLOOR = 0.1

def sum_order(n: int) -> float:
    """How much more a running sum of `n` terms rounds than a single rounding of each term, for
    the rounding models (`adapters.jax_rounding`, `adapters.torch_rounding`): summed one after
    another, a term is carried through `(n + 1) / 2` roundings on average, and with terms of
    random sign the sum's error spreads as the square root of that."""
    return math.sqrt((n + 1) / 2)


# Draws of the rounding errors per element (see crosscheck/adapters/jax_rounding.py).
SPREAD_DRAWS = 8


@dataclass(frozen=True)
class Tolerance:
    """A fixed allowance, `atol + rtol * |expected|` (for checks without a rounding model)."""

    rtol: float
    atol: float

    def allowed(self, expected: np.ndarray) -> np.ndarray:
        return self.atol + self.rtol * np.abs(expected)


def rounding_units(dtype: str) -> tuple[float, float, float, float]:
    """How a computation in `dtype` rounds: the unit roundoffs of each result and of each term
    of a sum (accumulated in `ACCUMULATION[dtype]`), then the smallest normal numbers of the
    two, below which rounding errs by a fixed amount (`SMALLEST_NORMAL`)."""
    acc = ACCUMULATION[dtype]
    return UNIT_ROUNDOFF[dtype], UNIT_ROUNDOFF[acc], SMALLEST_NORMAL[dtype], SMALLEST_NORMAL[acc]


def allowance(error: np.ndarray, sides: int) -> np.ndarray:
    """The allowed difference per element, for rounding errors of shape `(trials, ...)` (the
    spread that `jax_requests.rounding` measures), between two results of which `sides` (1 or 2) were computed in the
    dtype under test: one against the float64 oracle, two against each other."""
    error = np.asarray(error, dtype=np.float64)
    flat = error.reshape(error.shape[0], -1) if error.ndim else error.reshape(1, 1)
    per_trial = np.sqrt(np.mean(np.square(flat), axis=1)) if flat.shape[1] else np.zeros(flat.shape[0])
    floor = per_trial.reshape((-1,) + (1,) * (error.ndim - 1)) if error.ndim else per_trial[0]
    return sides * BUDGET * (error + PER_TRIAL_FLOOR * floor)


@dataclass
class Comparison:
    """What `compare` found; `lines` is the body of a failure message (empty when passed)."""

    passed: bool
    max_abs: float
    max_rel: float
    ratio: float  # worst |diff| / allowed; <= 1 passes
    atol: float  # the allowed difference at the element nearest its allowance
    rtol: float  # a `Tolerance`'s rtol; 0 for per-element allowances
    lines: list[str]
    bad_trials: tuple[int, ...] = ()  # indices along the leading trial axis with a mismatch


def _index(flat: int, shape: tuple[int, ...]) -> str:
    idx = np.unravel_index(flat, shape)
    return "(trial " + ", ".join(str(int(i)) for i in idx) + ")" if len(idx) > 1 else f"(trial {int(idx[0])})"


def compare(expected, actual, allowed, *, names: tuple[str, str] | None = None) -> Comparison:
    """Compare two arrays of the same intended shape, element by element.

    `allowed` is the allowed absolute difference per element (an array that broadcasts to
    `expected`, see `allowance`) or a `Tolerance`. `names` (expected's, actual's) are used in
    the hints.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    rtol = allowed.rtol if isinstance(allowed, Tolerance) else 0.0
    if expected.shape != actual.shape:
        lines = [f"Shape mismatch: expected {expected.shape[1:]}, actual {actual.shape[1:]} (per trial)"]
        hint = shape_hint(expected.shape[1:], actual.shape[1:])
        return Comparison(False, np.inf, np.inf, np.inf, np.nan, rtol, lines + hints_under([hint] if hint else []))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        allowed = allowed.allowed(expected) if isinstance(allowed, Tolerance) else np.asarray(allowed, dtype=np.float64)
        allowed = np.broadcast_to(allowed, expected.shape)
        diff = np.abs(actual - expected)
        same_special = (np.isnan(expected) & np.isnan(actual)) | (np.isinf(expected) & (actual == expected))
        special = ~np.isfinite(expected) | ~np.isfinite(actual)
        bad = np.where(special, ~same_special, ~(diff <= allowed))
        diff = np.where(special, np.where(same_special, 0.0, np.inf), diff)
        rel = np.where(diff == 0, 0.0, diff / np.abs(expected))
        ratio_el = np.where(diff == 0, 0.0, diff / allowed)
    n, k = expected.size, int(bad.sum())
    if n == 0:
        return Comparison(True, 0.0, 0.0, 0.0, 0.0, rtol, [])
    i_abs, i_rel, i_ratio = int(np.argmax(diff)), int(np.argmax(rel)), int(np.argmax(ratio_el))
    max_abs, max_rel, ratio = float(diff.flat[i_abs]), float(rel.flat[i_rel]), float(ratio_el.flat[i_ratio])
    at_worst = float(allowed.flat[i_ratio])
    lines = []
    if k:
        lines = [
            f"Mismatched elements: {k} / {n} ({100 * k / n:.1f}%)",
            f"Greatest absolute difference: {max_abs:.3g} at index {_index(i_abs, diff.shape)} "
            f"(up to {float(allowed.flat[i_abs]):.3g} allowed there)",
            f"Greatest relative difference: {max_rel:.3g} at index {_index(i_rel, diff.shape)}",
            f"Greatest difference / allowed: {ratio:.3g} at index {_index(i_ratio, diff.shape)} "
            f"(expected {float(expected.flat[i_ratio]):.6g}, actual {float(actual.flat[i_ratio]):.6g}, "
            f"up to {at_worst:.3g} allowed there)",
        ]
        nan_only = np.isnan(actual) != np.isnan(expected)
        if nan_only.any():
            first = _index(int(np.flatnonzero(nan_only)[0]), diff.shape)
            lines.append(f"NaN on one side only: {int(nan_only.sum())} elements, first at index {first}")
        lines += hints_under(value_hints(expected, actual, bad, names or ("expected", "actual")))
    bad_trials = tuple(int(t) for t in np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))) if bad.ndim else ()
    return Comparison(k == 0, max_abs, max_rel, ratio, at_worst, rtol, lines, bad_trials)
