"""Shape layers: the gradient is the output gradient put back into the input's shape.

Shapes are static: they travel as `nondiff_argnums`, never as residuals.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _reshape(in_shape, shape, x):
    return jnp.reshape(x, shape)


def _reshape_fwd(in_shape, shape, x):
    return jnp.reshape(x, shape), ()


def _reshape_bwd(in_shape, shape, res, g):
    return (jnp.reshape(g, in_shape),)


_reshape.defvjp(_reshape_fwd, _reshape_bwd)


def _as_shape(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    if not all(isinstance(s, int) for s in shape) or sum(s == -1 for s in shape) > 1 or any(s < -1 for s in shape):
        raise ValueError(f"`shape` (={shape}) must be ints >= -1 with at most one -1")
    return shape


def reshape(x: jax.Array, shape) -> jax.Array:
    """Like `jnp.reshape(x, shape)`; `shape` may hold one `-1`."""
    return _reshape(tuple(x.shape), _as_shape(shape), x)


class Reshape(nnx.Module):
    """`Reshape(*shape)(x) == reshape(x, shape)`."""

    def __init__(self, *shape: int):
        self.shape = _as_shape(shape)

    def __call__(self, x: jax.Array) -> jax.Array:
        return reshape(x, self.shape)


def _normalize_dim(dim: int, ndim: int, name: str) -> int:
    # A 0-dim array flattens as if it had one axis, as in torch.flatten.
    rank = max(ndim, 1)
    if not isinstance(dim, int) or not -rank <= dim < rank:
        raise ValueError(f"`{name}` (={dim}) must be an int in [{-rank}, {rank - 1}] for a {ndim}-dim input")
    return dim % rank


def _flat_shape(in_shape, start, end):
    shape = in_shape or (1,)
    merged = 1
    for s in shape[start : end + 1]:
        merged *= s
    return (*shape[:start], merged, *shape[end + 1 :])


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _flatten(in_shape, start, end, x):
    return jnp.reshape(x, _flat_shape(in_shape, start, end))


def _flatten_fwd(in_shape, start, end, x):
    return jnp.reshape(x, _flat_shape(in_shape, start, end)), ()


def _flatten_bwd(in_shape, start, end, res, g):
    return (jnp.reshape(g, in_shape),)


_flatten.defvjp(_flatten_fwd, _flatten_bwd)


def flatten(x: jax.Array, start_dim: int = 0, end_dim: int = -1) -> jax.Array:
    """Like `torch.flatten` (JAX has none): axes `start_dim..end_dim` (inclusive) merge into one.

    Args:
        x: `(d0, ..., dn)`; a 0-dim array becomes `(1,)`.
        start_dim, end_dim: the first and last axes merged; negative counts from the end.

    Returns:
        `(d0, ..., d[start] * ... * d[end], ..., dn)`. On channels-last arrays the merged
        order differs from torch's on NCHW: flatten NHWC after moving channels, if it matters.
    """
    start = _normalize_dim(start_dim, x.ndim, "start_dim")
    end = _normalize_dim(end_dim, x.ndim, "end_dim")
    if start > end:
        raise ValueError(f"`start_dim` (={start_dim}) must not come after `end_dim` (={end_dim})")
    return _flatten(tuple(x.shape), start, end, x)


class Flatten(nnx.Module):
    """Module form of `flatten` (Flax has none; the twin of `torch.nn.Flatten`, same defaults)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        self.start_dim = start_dim
        self.end_dim = end_dim

    def __call__(self, x: jax.Array) -> jax.Array:
        return flatten(x, self.start_dim, self.end_dim)


def _as_dims(dims, ndim: int) -> tuple[int, ...]:
    dims = tuple(dims)
    ok = all(isinstance(d, int) for d in dims) and len(dims) == ndim and all(-ndim <= d < ndim for d in dims)
    if not ok or sorted(d % ndim for d in dims) != list(range(ndim)):
        raise ValueError(f"`dims` (={dims}) must hold each of the {ndim} axes of the input once")
    return tuple(d % ndim for d in dims)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _permute(dims, x):
    return jnp.transpose(x, dims)


def _permute_fwd(dims, x):
    return jnp.transpose(x, dims), ()


def _permute_bwd(dims, res, g):
    inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
    return (jnp.transpose(g, inverse),)


_permute.defvjp(_permute_fwd, _permute_bwd)


def permute(x: jax.Array, dims) -> jax.Array:
    """Like `jnp.transpose(x, dims)` (torch's `permute`): output axis `i` is input axis `dims[i]`.

    Args:
        x: `(d0, ..., dn)`.
        dims: a permutation of `range(x.ndim)`; negative entries count from the end.

    Returns:
        `(d[dims[0]], ..., d[dims[n]])`.
    """
    return _permute(_as_dims(dims, x.ndim), x)


class Permute(nnx.Module):
    """`Permute(*dims)(x) == permute(x, dims)` (also `Permute(dims)`); the twin of torch's."""

    def __init__(self, *dims):
        self.dims = tuple(dims[0]) if len(dims) == 1 and not isinstance(dims[0], int) else tuple(dims)

    def __call__(self, x: jax.Array) -> jax.Array:
        return permute(x, self.dims)
