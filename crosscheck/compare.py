"""The one comparator: every check in the harness goes through `compare`.

Arrays arrive as numpy (float64 or integer) with a leading trial axis. An element passes when
`|actual - expected| <= atol + rtol * |expected|`, where `atol` is the table's entry times the
root-mean-square of `expected` (a tensor's rounding noise scales with its magnitude, not with
1), or times `SCALE_FLOOR` if that is larger. NaN (and inf) must appear in the same places on both sides: nothing is replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .diagnose import hints_under, shape_hint, value_hints

# Unit roundoff per dtype (half the gap between 1 and the next float).
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}

# The absolute tolerance scales with rms(expected), but never below this: the drawn inputs and
# cotangents are of unit size, and a result far smaller than that (a Hessian product that is
# exactly 0 along a softmax axis of size 1) carries the rounding noise of the unit-size terms
# that cancelled to make it, not noise in proportion to its own size.
SCALE_FLOOR = 1e-2

# A Hessian-vector product differentiates twice, and its element i sums terms of the size of
# `ct * (parts of H) * v_i`: of the size of the direction `v`, not of the result. Where those
# terms cancel (gelu-tanh at a zero of f''), the result carries their rounding noise: 2.98e-14
# (270 u) on a scalar input (|v| = 1) in float64, against 1.49e-14 allowed at the unit floor.
# So the floor of a Hessian product is at least HVP_FLOOR times the rms of its direction.
HVP_FLOOR = 1e-1

# float64 and float32 (custom vs the other framework or autodiff, same dtype): rtol = atol =
# ROUNDING_BUDGET[kind] * sqrt(max(K, REDUCTION_FLOOR)) * u, K being the longest reduction in
# the case (bounded by its largest tensor). See docs/tolerances.md for where the numbers
# come from and what the 1000-seed soak measured against them.
ROUNDING_BUDGET = {"values": 32.0, "grads": 160.0, "hvp": 1280.0}
REDUCTION_FLOOR = 64
# bfloat16 and float16: (rtol, atol), each side vs the float64 oracle on the same rounded inputs.
VALUE_TOLERANCES = {"bfloat16": (2e-2, 2e-2), "float16": (4e-3, 4e-3)}
GRAD_TOLERANCES = {"bfloat16": (4e-2, 4e-2), "float16": (8e-3, 8e-3)}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def scaled(self, factor: float) -> "Tolerance":
        return Tolerance(self.rtol * factor, self.atol * factor)


def tolerance(dtype: str, kind: str, overrides: dict | None = None, reduction: int = 1) -> Tolerance:
    """The `kind` ("values", "grads" or "hvp") tolerance for `dtype` in a case whose longest
    reduction sums `reduction` terms, with the case's overrides on top."""
    override = (overrides or {}).get(dtype, {}).get(kind)
    if override is not None:
        return Tolerance(*override)
    if dtype in VALUE_TOLERANCES:
        return Tolerance(*{"values": VALUE_TOLERANCES, "grads": GRAD_TOLERANCES}[kind][dtype])
    t = ROUNDING_BUDGET[kind] * math.sqrt(max(reduction, REDUCTION_FLOOR)) * UNIT_ROUNDOFF[dtype]
    return Tolerance(t, t)


@dataclass
class Comparison:
    """What `compare` found; `lines` is the body of a failure message (empty when passed)."""

    passed: bool
    max_abs: float
    max_rel: float
    ratio: float  # worst |diff| / allowed; <= 1 passes
    atol: float  # effective absolute tolerance (table entry times the scale)
    rtol: float
    lines: list[str]
    bad_trials: tuple[int, ...] = ()  # indices along the leading trial axis with a mismatch


def _index(flat: int, shape: tuple[int, ...]) -> str:
    idx = np.unravel_index(flat, shape)
    return "(trial " + ", ".join(str(int(i)) for i in idx) + ")" if len(idx) > 1 else f"(trial {int(idx[0])})"


def compare(
    expected, actual, tol: Tolerance, *, scaled: bool = True, floor: float = SCALE_FLOOR, names: tuple[str, str] | None = None
) -> Comparison:
    """Compare two arrays of the same intended shape, element by element.

    With `scaled=False` the absolute tolerance is used as given, not times the scale; `floor`
    is the least scale (`SCALE_FLOOR` unless the terms behind the result are of another size).
    `names` (expected's, actual's) are used in the hints.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        lines = [f"Shape mismatch: expected {expected.shape[1:]}, actual {actual.shape[1:]} (per trial)"]
        hint = shape_hint(expected.shape[1:], actual.shape[1:])
        return Comparison(False, np.inf, np.inf, np.inf, tol.atol, tol.rtol, lines + hints_under([hint] if hint else []))
    finite = np.isfinite(expected)
    scale = float(np.sqrt(np.mean(np.square(expected[finite])))) if finite.any() else 0.0
    atol = tol.atol * (max(scale, floor) if scaled else 1.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(actual - expected)
        allowed = atol + tol.rtol * np.abs(expected)
        same_special = (np.isnan(expected) & np.isnan(actual)) | (np.isinf(expected) & (actual == expected))
        special = ~np.isfinite(expected) | ~np.isfinite(actual)
        bad = np.where(special, ~same_special, ~(diff <= allowed))
        diff = np.where(special, np.where(same_special, 0.0, np.inf), diff)
        rel = np.where(diff == 0, 0.0, diff / np.abs(expected))
        ratio_el = np.where(diff == 0, 0.0, diff / allowed)
    n, k = expected.size, int(bad.sum())
    if n == 0:
        return Comparison(True, 0.0, 0.0, 0.0, atol, tol.rtol, [])
    i_abs, i_rel = int(np.argmax(diff)), int(np.argmax(rel))
    max_abs, max_rel, ratio = float(diff.flat[i_abs]), float(rel.flat[i_rel]), float(ratio_el.max())
    lines = []
    if k:
        lines = [
            f"Mismatched elements: {k} / {n} ({100 * k / n:.1f}%)",
            f"Greatest absolute difference: {max_abs:.3g} at index {_index(i_abs, diff.shape)} (up to {atol:.3g} allowed)",
            f"Greatest relative difference: {max_rel:.3g} at index {_index(i_rel, diff.shape)} (up to {tol.rtol:.3g} allowed)",
        ]
        nan_only = np.isnan(actual) != np.isnan(expected)
        if nan_only.any():
            first = _index(int(np.flatnonzero(nan_only)[0]), diff.shape)
            lines.append(f"NaN on one side only: {int(nan_only.sum())} elements, first at index {first}")
        lines += hints_under(value_hints(expected, actual, bad, names or ("expected", "actual")))
    bad_trials = tuple(int(t) for t in np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))) if bad.ndim else ()
    return Comparison(k == 0, max_abs, max_rel, ratio, atol, tol.rtol, lines, bad_trials)
