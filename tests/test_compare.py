"""The comparator and the tolerance rule (docs/tolerances.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crosscheck.compare import (
    HVP_FLOOR, REDUCTION_FLOOR, ROUNDING_BUDGET, SCALE_FLOOR, UNIT_ROUNDOFF, Tolerance, compare, tolerance,
)

TOL = Tolerance(1e-6, 1e-6)


def _x(scale=1.0, shape=(3, 4, 5)):
    return scale * np.random.default_rng(0).standard_normal(shape)


@pytest.mark.parametrize("scale", [1e-1, 1.0, 1e3])
def test_errors_just_inside_pass_and_just_outside_fail_at_any_scale(scale):
    e = _x(scale)
    rms = np.sqrt(np.mean(e**2))
    assert compare(e, e + 0.9e-6 * rms, TOL).passed
    bad = compare(e, e + 2.1e-6 * (rms + np.abs(e)), TOL)
    assert not bad.passed and bad.ratio > 1 and "Mismatched elements: 60 / 60" in bad.lines[0]


def test_a_tiny_expected_result_is_judged_against_unit_size_noise_not_its_own():
    # An exact 0 computed one way, rounding noise of unit-size terms the other way.
    noise = 1e-9 * _x()
    assert compare(noise, np.zeros_like(noise), TOL).passed
    # ...but an error the size of the floor itself is not noise
    assert not compare(noise, noise + 3 * SCALE_FLOOR * 1e-6, TOL).passed


def test_a_floor_given_for_larger_terms_allows_their_noise_and_no_more():
    # A Hessian product near a zero of f'', from unit-size terms (a direction of size 1).
    expected = np.array([[3.4e-7], [1.8e-2]])
    noisy = expected + np.array([[2.98e-14], [0.0]])  # gelu-tanh's measured float64 noise
    tol = tolerance("float64", "hvp")
    assert not compare(expected, noisy, tol).passed  # against SCALE_FLOOR: a false alarm
    assert compare(expected, noisy, tol, floor=HVP_FLOOR).passed
    assert not compare(expected, expected + 2 * tol.atol * HVP_FLOOR, tol, floor=HVP_FLOOR).passed


def test_nan_must_match_in_place():
    e = _x()
    a = e.copy()
    a[0, 1, 2] = np.nan
    out = compare(e, a, TOL)
    assert not out.passed and any("NaN on one side only: 1 elements" in ln for ln in out.lines)
    e2 = e.copy()
    e2[0, 1, 2] = np.nan
    assert compare(e2, a, TOL).passed


def test_shape_mismatch_fails_with_the_per_trial_shapes():
    out = compare(_x(shape=(2, 3)), _x(shape=(2, 1)), TOL)
    assert not out.passed and out.lines[0] == "Shape mismatch: expected (3,), actual (1,) (per trial)"


def test_bad_trials_name_the_trials_that_mismatch():
    e = _x()
    a = e.copy()
    a[2, 0, 0] += 1
    assert compare(e, a, TOL).bad_trials == (2,)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_full_precision_tolerance_grows_as_sqrt_of_the_longest_reduction(dtype):
    small = tolerance(dtype, "grads", reduction=1)
    assert small == tolerance(dtype, "grads", reduction=REDUCTION_FLOOR)
    assert math.isclose(tolerance(dtype, "grads", reduction=4 * REDUCTION_FLOOR).rtol, 2 * small.rtol)
    assert small.rtol / UNIT_ROUNDOFF[dtype] == pytest.approx(ROUNDING_BUDGET["grads"] * math.sqrt(REDUCTION_FLOOR))
    values, grads, hvp = (tolerance(dtype, k, reduction=100).rtol for k in ("values", "grads", "hvp"))
    assert values < grads < hvp


def test_low_precision_tables_ignore_the_reduction_and_overrides_win():
    assert tolerance("bfloat16", "grads", reduction=1) == tolerance("bfloat16", "grads", reduction=10_000)
    override = {"float64": {"grads": (1e-9, 2e-9)}}
    assert tolerance("float64", "grads", override, reduction=10) == Tolerance(1e-9, 2e-9)
    assert tolerance("float64", "values", override) == tolerance("float64", "values")
