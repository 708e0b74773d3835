"""softsign for JAX: a `jax.custom_vjp` with its own backward, and an `nnx.Module`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def _softsign(x):
    return x / (1 + jnp.abs(x))


@jax.custom_vjp
def softsign(x: jax.Array) -> jax.Array:
    """Like `jax.nn.soft_sign`; `dy/dx = 1 / (1 + |x|)^2`."""
    return _softsign(x)


def _softsign_fwd(x):
    return _softsign(x), (x,)


def _softsign_bwd(res, g):
    (x,) = res
    return (g / (1 + jnp.abs(x)) ** 2,)


softsign.defvjp(_softsign_fwd, _softsign_bwd)


class Softsign(nnx.Module):
    """Module form of `softsign` (no parameters)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return softsign(x)
