"""The comparator and the allowance rule (docs/tolerances.md)."""

from __future__ import annotations

import numpy as np
import pytest

from crosscheck.compare import (
    BUDGET, PER_TRIAL_FLOOR, UNIT_ROUNDOFF, Tolerance, allowance, compare, rounding_units,
)

TOL = Tolerance(1e-6, 1e-6)


def _x(scale=1.0, shape=(3, 4, 5)):
    return scale * np.random.default_rng(0).standard_normal(shape)


@pytest.mark.parametrize("scale", [1e-1, 1.0, 1e3])
def test_errors_just_inside_pass_and_just_outside_fail_at_any_scale(scale):
    e = _x(scale)
    allowed = 1e-6 * np.abs(e) + 1e-9
    assert compare(e, e + 0.9 * allowed, allowed).passed
    bad = compare(e, e + 1.1 * allowed, allowed)
    assert not bad.passed and 1 < bad.ratio < 1.2 and "Mismatched elements: 60 / 60" in bad.lines[0]


def test_a_failure_names_the_element_nearest_its_allowance_with_both_values():
    e = _x()
    allowed = np.full(e.shape, 1e-3)
    allowed[1, 2, 3] = 1e-9  # a well-conditioned element: a small error there is a bug
    a = e.copy()
    a[1, 2, 3] += 1e-6
    a[0, 0, 0] += 5e-4  # larger, but inside its own allowance
    out = compare(e, a, allowed)
    assert not out.passed and "1 / 60" in out.lines[0]
    assert "at index (trial 0, 0, 0) (up to 0.001 allowed there)" in out.lines[1]  # largest, yet inside
    worst = [ln for ln in out.lines if ln.startswith("Greatest difference / allowed")][0]
    assert "index (trial 1, 2, 3)" in worst and f"expected {e[1, 2, 3]:.6g}" in worst


def test_a_tolerance_is_absolute_plus_relative():
    e = _x()
    assert compare(e, e + 0.9 * (1e-6 + 1e-6 * np.abs(e)), TOL).passed
    assert not compare(e, e + 1.1 * (1e-6 + 1e-6 * np.abs(e)), TOL).passed


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


def test_low_precision_sums_are_rounded_in_float32():
    assert rounding_units("bfloat16")[:2] == (2.0**-8, 2.0**-24)
    assert rounding_units("float16")[:2] == (2.0**-11, 2.0**-24)
    assert rounding_units("float64")[:2] == (2.0**-53, 2.0**-53)
    # Below these, results are subnormal: float16's and float32's smallest normal numbers.
    assert rounding_units("float16")[2:] == (2.0**-14, 2.0**-126)


def test_allowance_is_per_element_with_a_floor_from_its_own_trial_only():
    err = np.array([[1.0, 0.0, 0.0, 0.0], [1e-6, 1e-6, 1e-6, 1e-6]])
    allowed = allowance(err, 1)
    # Trial 0: rms 0.5, so its exact-zero elements are allowed PER_TRIAL_FLOOR of that.
    assert allowed[0, 1] == pytest.approx(BUDGET * PER_TRIAL_FLOOR * 0.5)
    assert allowed[0, 0] == pytest.approx(BUDGET * (1 + PER_TRIAL_FLOOR * 0.5))
    # Trial 1 is judged as if alone: trial 0's large errors do not widen it.
    np.testing.assert_allclose(allowed[1], BUDGET * 1e-6 * (1 + PER_TRIAL_FLOOR))
    np.testing.assert_allclose(allowance(err, 2), 2 * allowed)
    # A trial judged inside a batch of trials gets what it gets alone.
    np.testing.assert_allclose(allowance(err[1:], 1)[0], allowed[1])


def _spread(f, x, dtype, draws=64):
    import jax.numpy as jnp

    from crosscheck.adapters.jax_rounding import noise, spread

    return np.asarray(spread(f, (x,), jnp.asarray(rounding_units(dtype)), jnp.asarray(noise(draws))))


def test_conditioning_from_an_intermediate_is_seen():
    # gelu-tanh at x = -3 in bfloat16: the result is small through cancellation and its
    # error comes from rounding tanh(...) near -1, which perturbing the input cannot show.
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def gelu_tanh(x):
        return 0.5 * x * (1 + jnp.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))

    x = jnp.array([-3.0, 0.5])
    y = np.asarray(gelu_tanh(x))
    s = _spread(gelu_tanh, x, "bfloat16")
    u = UNIT_ROUNDOFF["bfloat16"]
    # At x = -3 the spread is far above |y| u; at 0.5 it is of |y| u's size.
    assert s[0] > 30 * u * abs(y[0]) and s[1] < 5 * u * abs(y[1])
    # And the model covers bfloat16's real error there.
    xb = x.astype(jnp.bfloat16)
    real = abs(float(gelu_tanh(xb)[0]) - float(gelu_tanh(xb.astype(jnp.float64))[0]))
    assert real < BUDGET * s[0]


def test_a_subnormal_result_errs_as_the_smallest_normal_number_does():
    # cross_entropy's float16 input gradient at 64 trials: elements of about 1e-6 are subnormal
    # in float16 (below 2^-14) and erred by 0.43 of the subnormal spacing, 20 times u |z|.
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = jnp.asarray(np.random.default_rng(2).uniform(1e-3, 2e-3, 256))
    scaled = lambda v: v * 1.1e-3  # noqa: E731
    s = _spread(scaled, x, "float16")
    u = UNIT_ROUNDOFF["float16"]
    assert np.all(s > 0.4 * u * 2.0**-14)  # the spacing's share (rms of a uniform: 0.58), not u |z|
    real = np.abs(np.asarray(scaled(x.astype(jnp.float16)), np.float64) - np.asarray(scaled(x)))
    assert real.max() > 5 * u * float(jnp.max(scaled(x)))  # the case the relative model misses
    assert np.all(real < BUDGET * s)
    # Where the result is normal the floor changes nothing.
    np.testing.assert_allclose(_spread(scaled, x * 1e3, "float16"), _spread(scaled, x * 1e3, "float64") * 2.0**42)


def test_a_sum_of_many_terms_rounds_in_the_accumulation_dtype():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((64, 4096)))
    total = lambda v: jnp.sum(v, axis=-1)  # noqa: E731
    # The model's spread against real float32 sums accumulated one term after another (numpy's
    # cumsum is sequential): of the same size. Perturbing each term once, as if the running sum
    # were rounded only at the end, gave 1/40 of the real spread here.
    s32 = _spread(total, x, "float32")
    exact = np.asarray(x, np.longdouble).sum(axis=-1)
    real = np.cumsum(np.asarray(x, np.float32), axis=-1)[:, -1].astype(np.longdouble) - exact
    ratio = np.sqrt(np.mean(np.square(real.astype(np.float64) / s32)))
    assert 0.3 < ratio < 1.5, ratio
    # In bfloat16 the terms still accumulate in float32: the sum's rounding is float32's, and
    # only the result's own rounding is bfloat16's.
    sb16 = _spread(total, x, "bfloat16")
    assert np.all(sb16 < 2.0**-8 * np.abs(np.asarray(total(x))) + 2 * s32)
