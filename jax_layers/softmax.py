"""Softmax and log-softmax with hand-written VJPs, called like `jax.nn`'s.

The axes are static (`nondiff_argnums`); the residuals are the output (and softmax's optional
`where` mask). With `y = softmax(x)`, `dx = y (g - sum(g y))`, where `y` is 0 at masked-out
elements; with `y = log_softmax(x)`, `dx = g - exp(y) sum(g)`, the sums over the axes. A
log-softmax mask is applied around its VJP, by `jnp.where` (see `log_softmax`).

bfloat16 and float16 are computed in float32 and rounded once at the end, as torch's kernels
do: exp, sum and divide each rounded to 8 or 11 bits would cost several roundings per output.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx


def _axes(axis, ndim: int) -> tuple[int, ...]:
    axes = tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    if not all(isinstance(a, int) and not isinstance(a, bool) and -ndim <= a < ndim for a in axes):
        raise ValueError(f"`axis` (={axis}) must be None, an int or ints in [{-ndim}, {ndim - 1}] for a {ndim}-dim input")
    normal = tuple(sorted({a % ndim for a in axes}))
    if len(normal) != len(axes):
        raise ValueError(f"`axis` (={axis}) repeats an axis")
    return normal


def _wide(x):
    return x.astype(jnp.float32) if x.dtype in (jnp.bfloat16, jnp.float16) else x


def _shifted(axes, x, where):
    # Masked-out elements take no part in the max and read as -inf.
    x_max = jnp.max(x, axes, where=where, initial=-jnp.inf, keepdims=True)
    x_safe = x if where is None else jnp.where(where, x, -jnp.inf)
    return x_safe - x_max


def _softmax(axes, x, where):
    unnormalized = jnp.exp(_shifted(axes, _wide(x), where))
    y = unnormalized / jnp.sum(unnormalized, axes, where=where, keepdims=True)
    return (y if where is None else jnp.where(where, y, 0)).astype(x.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _softmax_vjp(axes, x, where):
    return _softmax(axes, x, where)


def _softmax_fwd(axes, x, where):
    y = _softmax(axes, x, where)
    return y, (y, where)


def _softmax_bwd(axes, res, g):
    y, where = res
    wy, wg = _wide(y), _wide(g)
    # y is 0 where masked out, so those elements get no gradient and add nothing to the sum.
    return (wy * (wg - jnp.sum(wg * wy, axes, keepdims=True))).astype(g.dtype), None


_softmax_vjp.defvjp(_softmax_fwd, _softmax_bwd)


def _log_softmax(axes, x):
    shifted = _shifted(axes, _wide(x), None)
    lse = jnp.log(jnp.sum(jnp.exp(shifted), axes, keepdims=True))
    return (shifted - lse).astype(x.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _log_softmax_vjp(axes, x):
    return _log_softmax(axes, x)


def _log_softmax_fwd(axes, x):
    y = _log_softmax(axes, x)
    return y, y


def _log_softmax_bwd(axes, y, g):
    wy, wg = _wide(y), _wide(g)
    return ((wg - jnp.exp(wy) * jnp.sum(wg, axes, keepdims=True)).astype(g.dtype),)


_log_softmax_vjp.defvjp(_log_softmax_fwd, _log_softmax_bwd)


def _where(where, x):
    if where is None:
        return None
    where = jnp.asarray(where)
    try:
        fits = jnp.broadcast_shapes(where.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"`where` (shape {where.shape}) must broadcast to `x`'s shape {x.shape}")
    return jnp.broadcast_to(where.astype(bool), x.shape)


def softmax(x: jax.Array, axis: int | tuple[int, ...] | None = -1, where: jax.Array | None = None) -> jax.Array:
    """Like `jax.nn.softmax`: `exp(x) / sum(exp(x))` over `axis` (torch's `dim`).

    Args:
        x: any shape.
        axis: an int, ints, or None for all axes.
        where: optional bool mask broadcastable to `x`; masked-out outputs are 0.

    Returns:
        The shape of `x`.
    """
    return _softmax_vjp(_axes(axis, x.ndim), x, _where(where, x))


def log_softmax(x: jax.Array, axis: int | tuple[int, ...] | None = -1, where: jax.Array | None = None) -> jax.Array:
    """Like `jax.nn.log_softmax`: `x - log(sum(exp(x)))` over `axis`; masked-out outputs are -inf."""
    axes, where = _axes(axis, x.ndim), _where(where, x)
    if where is None:
        return _log_softmax_vjp(axes, x)
    # Masked-out inputs enter as -inf: they add nothing to the max or the sum. Both `where`s are
    # JAX's own, so their VJPs give the masked inputs no gradient and drop the cotangents of the
    # masked (constant -inf) outputs before the hand-written VJP, which needs no mask.
    return jnp.where(where, _log_softmax_vjp(axes, jnp.where(where, x, -jnp.inf)), -jnp.inf)


class Softmax(nnx.Module):
    """Module form of `softmax` (Flax has none; the twin of `torch.nn.Softmax`, `dim` -> `axis`)."""

    def __init__(self, axis: int | tuple[int, ...] | None = -1):
        self.axis = axis

    def __call__(self, x: jax.Array) -> jax.Array:
        return softmax(x, self.axis)


class LogSoftmax(nnx.Module):
    """Module form of `log_softmax` (the twin of `torch.nn.LogSoftmax`, `dim` -> `axis`)."""

    def __init__(self, axis: int | tuple[int, ...] | None = -1):
        self.axis = axis

    def __call__(self, x: jax.Array) -> jax.Array:
        return log_softmax(x, self.axis)
