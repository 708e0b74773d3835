"""Elementwise activations with hand-written VJPs, named and called like `jax.nn`'s.

Every function maps an array of any shape to one of the same shape and dtype. Options that
shape the function (slopes, `approximate`, softplus's `beta`/`threshold`) are static: they
travel as `nondiff_argnums`, never as residuals. Flax has no activation modules; the small
modules here are the twins of torch's (`Sigmoid`, `ReLU`, ...).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))
_INV_SQRT_2 = float(np.sqrt(0.5))
_INV_SQRT_2PI = float(1 / np.sqrt(2 * np.pi))
_GELU_CUBIC = 0.044715


def _sigmoid(x):
    return 1 / (1 + jnp.exp(-x))


@jax.custom_vjp
def sigmoid(x: jax.Array) -> jax.Array:
    """Like `jax.nn.sigmoid`; `dy/dx = y (1 - y)` from the saved output."""
    return _sigmoid(x)


def _sigmoid_fwd(x):
    y = _sigmoid(x)
    return y, (y,)


def _sigmoid_bwd(res, g):
    (y,) = res
    return (g * y * (1 - y),)


sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)


# -- tanh ------------------------------------------------------------------------------


@jax.custom_vjp
def tanh(x: jax.Array) -> jax.Array:
    """Like `jax.nn.tanh`; `dy/dx = 1 - y^2` from the saved output."""
    return jnp.tanh(x)


def _tanh_fwd(x):
    y = jnp.tanh(x)
    return y, (y,)


def _tanh_bwd(res, g):
    (y,) = res
    return (g * (1 - y * y),)


tanh.defvjp(_tanh_fwd, _tanh_bwd)


# -- relu ------------------------------------------------------------------------------


def _relu(x):
    return jnp.maximum(x, 0)


@jax.custom_vjp
def relu(x: jax.Array) -> jax.Array:
    """Like `jax.nn.relu`; the gradient passes where `y > 0` (zero at the kink)."""
    return _relu(x)


def _relu_fwd(x):
    y = _relu(x)
    return y, (y,)


def _relu_bwd(res, g):
    (y,) = res
    return (jnp.where(y > 0, g, jnp.zeros_like(g)),)


relu.defvjp(_relu_fwd, _relu_bwd)


# -- leaky_relu ------------------------------------------------------------------------


def _leaky_relu(negative_slope, x):
    return jnp.where(x > 0, x, negative_slope * x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _leaky_relu_vjp(negative_slope, x):
    return _leaky_relu(negative_slope, x)


def _leaky_relu_fwd(negative_slope, x):
    return _leaky_relu(negative_slope, x), (x,)


def _leaky_relu_bwd(negative_slope, res, g):
    (x,) = res
    return (jnp.where(x > 0, g, negative_slope * g),)


_leaky_relu_vjp.defvjp(_leaky_relu_fwd, _leaky_relu_bwd)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Like `jax.nn.leaky_relu`: `x` for `x > 0`, else `negative_slope * x`."""
    return _leaky_relu_vjp(float(negative_slope), x)


# -- elu -------------------------------------------------------------------------------


def _elu(alpha, x):
    # expm1 of the clamped input: the discarded branch never overflows.
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _elu_vjp(alpha, x):
    return _elu(alpha, x)


def _elu_fwd(alpha, x):
    return _elu(alpha, x), (x,)


def _elu_bwd(alpha, res, g):
    (x,) = res
    return (jnp.where(x > 0, g, g * (alpha * jnp.exp(jnp.minimum(x, 0)))),)


_elu_vjp.defvjp(_elu_fwd, _elu_bwd)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Like `jax.nn.elu`: `x` for `x > 0`, else `alpha (exp(x) - 1)`."""
    return _elu_vjp(float(alpha), x)


# -- gelu ------------------------------------------------------------------------------


def _gelu(approximate, x):
    if approximate:
        return 0.5 * x * (1 + jnp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x)))
    return 0.5 * x * (1 + jax.lax.erf(x * _INV_SQRT_2))


def _gelu_slope(approximate, x):
    if approximate:
        t = jnp.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x))
        dt = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dt
    cdf = 0.5 * (1 + jax.lax.erf(x * _INV_SQRT_2))
    pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)
    return cdf + x * pdf


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gelu_vjp(approximate, x):
    return _gelu(approximate, x)


def _gelu_fwd(approximate, x):
    return _gelu(approximate, x), (x,)


def _gelu_bwd(approximate, res, g):
    (x,) = res
    return (g * _gelu_slope(approximate, x),)


_gelu_vjp.defvjp(_gelu_fwd, _gelu_bwd)


def gelu(x: jax.Array, approximate: bool = True) -> jax.Array:
    """Like `jax.nn.gelu`, whose default is the tanh approximation (torch's is exact).

    `approximate=False` is torch's `approximate="none"`, `True` its `"tanh"`.
    """
    if not isinstance(approximate, (bool, np.bool_)):
        raise ValueError(f"`approximate` (={approximate!r}) must be a bool")
    return _gelu_vjp(bool(approximate), x)


# -- silu ------------------------------------------------------------------------------


def _silu(x):
    return x * _sigmoid(x)


@jax.custom_vjp
def silu(x: jax.Array) -> jax.Array:
    """Like `jax.nn.silu`: `x sigmoid(x)`; `dy/dx = s (1 + x (1 - s))`."""
    return _silu(x)


def _silu_fwd(x):
    return _silu(x), (x,)


def _silu_bwd(res, g):
    (x,) = res
    s = _sigmoid(x)
    return (g * s * (1 + x * (1 - s)),)


silu.defvjp(_silu_fwd, _silu_bwd)


# -- softplus --------------------------------------------------------------------------


def _softplus(beta, threshold, x):
    bx = beta * x
    soft = jnp.logaddexp(bx, 0) / beta
    return soft if threshold is None else jnp.where(bx > threshold, x, soft)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _softplus_vjp(beta, threshold, x):
    return _softplus(beta, threshold, x)


def _softplus_fwd(beta, threshold, x):
    return _softplus(beta, threshold, x), (x,)


def _softplus_bwd(beta, threshold, res, g):
    (x,) = res
    bx = beta * x
    soft = g * _sigmoid(bx)
    return (soft if threshold is None else jnp.where(bx > threshold, g, soft),)


_softplus_vjp.defvjp(_softplus_fwd, _softplus_bwd)


def softplus(x: jax.Array, *, beta: float = 1.0, threshold: float | None = None) -> jax.Array:
    """Like `jax.nn.softplus` (`log(1 + exp(x))`), with torch's `beta` and `threshold`.

    `y = log(1 + exp(beta x)) / beta`; with a `threshold`, `y = x` where `beta x > threshold`
    (torch's rule, default 20 there). `threshold=None`, the default, never switches, as
    `jax.nn.softplus`.
    """
    if beta == 0:
        raise ValueError(f"`beta` (={beta}) must be nonzero")
    return _softplus_vjp(float(beta), None if threshold is None else float(threshold), x)


# -- modules ---------------------------------------------------------------------------


class Sigmoid(nnx.Module):
    """Module form of `sigmoid` (Flax has none; the twin of `torch.nn.Sigmoid`)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return sigmoid(x)


class Tanh(nnx.Module):
    """Module form of `tanh` (the twin of `torch.nn.Tanh`)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return tanh(x)


class ReLU(nnx.Module):
    """Module form of `relu` (the twin of `torch.nn.ReLU`)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return relu(x)


class LeakyReLU(nnx.Module):
    """Module form of `leaky_relu` (the twin of `torch.nn.LeakyReLU`)."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def __call__(self, x: jax.Array) -> jax.Array:
        return leaky_relu(x, self.negative_slope)


class ELU(nnx.Module):
    """Module form of `elu` (the twin of `torch.nn.ELU`)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(self, x: jax.Array) -> jax.Array:
        return elu(x, self.alpha)


class GELU(nnx.Module):
    """Module form of `gelu` (the twin of `torch.nn.GELU`); tanh approximation by default, as `jax.nn.gelu`."""

    def __init__(self, approximate: bool = True):
        self.approximate = approximate

    def __call__(self, x: jax.Array) -> jax.Array:
        return gelu(x, self.approximate)


class SiLU(nnx.Module):
    """Module form of `silu` (the twin of `torch.nn.SiLU`)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return silu(x)


class Softplus(nnx.Module):
    """Module form of `softplus` (the twin of `torch.nn.Softplus`; no threshold by default, as `jax.nn`)."""

    def __init__(self, beta: float = 1.0, threshold: float | None = None):
        self.beta = beta
        self.threshold = threshold

    def __call__(self, x: jax.Array) -> jax.Array:
        return softplus(x, beta=self.beta, threshold=self.threshold)
