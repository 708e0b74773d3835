"""Hints under a failure message: what a mismatching gradient most likely is.

Each hint is a guess tested against the numbers (the transpose, a constant factor, a missing
sum), so a hint is only shown when the arrays bear it out.
"""

from __future__ import annotations

import numpy as np

# A pattern (a constant factor, a sign flip, a transpose) is named when the arrays fit it to
# this relative residual: far above any rounding, far below a chance resemblance.
PATTERN_CLOSE = 1e-3
# Guards a division by a norm that may be 0.
TINY = 1e-300


def shape_hint(expected: tuple[int, ...], actual: tuple[int, ...]) -> str | None:
    """Why a gradient of shape `actual` may have been meant as `expected` (per trial shapes)."""
    expected, actual = tuple(expected), tuple(actual)
    if expected == actual:
        return None
    if len(expected) == len(actual) and sorted(expected) == sorted(actual):
        if len(expected) == 2 or expected == actual[::-1]:
            return "looks like the transpose of the expected gradient"
        return "looks like the expected gradient with its axes permuted"
    try:
        if np.broadcast_shapes(expected, actual) == actual:
            lead = len(actual) - len(expected)
            axes = tuple(range(lead)) + tuple(
                lead + i for i, (e, a) in enumerate(zip(expected, actual[lead:])) if e == 1 and a != 1
            )
            return f"missing a sum over axes {axes}: the primal was broadcast there"
    except ValueError:
        pass
    return None


def _fmt_index(flat_indices, shape, limit=3) -> str:
    idx = [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat_indices[:limit]]
    return ", ".join(f"(trial {i[0]}{''.join(f', {x}' for x in i[1:])})" for i in idx)


def value_hints(expected: np.ndarray, actual: np.ndarray, bad: np.ndarray, names=("expected", "actual")) -> list[str]:
    """Hints for two same-shape arrays (leading trial axis) whose elements `bad` mismatch."""
    exp_name, act_name = names
    hints = []
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    nan_a = ~np.isfinite(a) & np.isfinite(e)
    if nan_a.any():
        first = _fmt_index(np.flatnonzero(nan_a), a.shape)
        hints.append(f"{act_name} has NaN/Inf where {exp_name} is finite: {int(nan_a.sum())} elements, first at {first}")
        return hints
    nan_e = ~np.isfinite(e) & np.isfinite(a)
    if nan_e.any():
        first = _fmt_index(np.flatnonzero(nan_e), e.shape)
        return [f"{exp_name} has NaN/Inf where {act_name} is finite: {int(nan_e.sum())} elements, first at {first}"]
    finite = np.isfinite(e) & np.isfinite(a)
    e, a = np.where(finite, e, 0.0), np.where(finite, a, 0.0)
    ee = float(np.vdot(e, e))
    aa = float(np.vdot(a, a))
    if ee == 0 and aa > 0:
        return [f"{exp_name} is all zeros"]
    if not np.any(a) and ee > 0:
        return [f"{act_name} is all zeros"]
    if ee > 0:
        c = float(np.vdot(a, e)) / ee
        resid = np.linalg.norm(a - c * e) / max(np.linalg.norm(a), TINY)
        if resid < PATTERN_CLOSE and abs(c - 1) > PATTERN_CLOSE:
            if abs(c + 1) < PATTERN_CLOSE:
                return [f"sign-flipped: {act_name} = -{exp_name}"]
            return [f"scaled by a constant: {act_name} = {c:.6g} x {exp_name}"]
    if e.ndim >= 3 and e.shape[-1] == e.shape[-2]:
        t = np.swapaxes(e, -1, -2)
        if np.allclose(a, t, rtol=PATTERN_CLOSE, atol=PATTERN_CLOSE * (np.sqrt(ee / e.size) if ee else 1.0)):
            return [f"{act_name} looks like the transpose of {exp_name} (last two axes)"]
    n_bad, n = int(bad.sum()), bad.size
    if 0 < n_bad <= n // 2:
        first = _fmt_index(np.flatnonzero(bad), bad.shape)
        hints.append(f"matches except on {n_bad} of {n} elements, first at {first}")
    return hints


def hints_under(lines: list[str]) -> list[str]:
    return [f"Hint: {h}" for h in lines]

