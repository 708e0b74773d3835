"""Elementwise activations with hand-written VJPs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


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


class Sigmoid(nnx.Module):
    """Module form of `sigmoid` (Flax has none; the twin of `torch.nn.Sigmoid`)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return sigmoid(x)
