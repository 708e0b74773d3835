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
