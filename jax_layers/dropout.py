"""Dropout whose keep mask is an input, with a hand-written VJP, and an `nnx.Dropout` drop-in.

JAX and torch draw random bits from different generators, so the same seed never gives the
same mask on both sides. The harness therefore draws one keep mask in numpy and passes it to
both; `Dropout` draws its own, exactly as `flax.nnx.Dropout`, when no mask is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx


def _dropout(rate, x, mask):
    if rate == 1:
        return jnp.zeros_like(x)
    return jnp.where(mask, x / (1 - rate), jnp.zeros_like(x))


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _dropout_vjp(rate, x, mask):
    return _dropout(rate, x, mask)


def _dropout_fwd(rate, x, mask):
    return _dropout(rate, x, mask), (mask,)


def _dropout_bwd(rate, res, g):
    (mask,) = res
    return _dropout(rate, g, mask), None


_dropout_vjp.defvjp(_dropout_fwd, _dropout_bwd)


def _check_rate(rate, name: str = "rate") -> float:
    if not 0 <= rate <= 1:
        raise ValueError(f"`{name}` (={rate}) must be between 0 and 1")
    return float(rate)


def check_mask(mask, shape, what: str = "`x`'s shape", name: str = "mask") -> jax.Array:
    """`mask` as a bool array of `shape`, if it broadcasts to `shape` (`what`, in errors)."""
    mask = jnp.asarray(mask)
    try:
        fits = jnp.broadcast_shapes(mask.shape, tuple(shape)) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"`{name}` (shape {mask.shape}) must broadcast to {what} {tuple(shape)}")
    return jnp.broadcast_to(mask.astype(bool), shape)


def dropout(x: jax.Array, rate: float, mask: jax.Array) -> jax.Array:
    """`x * mask / (1 - rate)` for a given keep `mask`, as `flax.nnx.Dropout` computes it.

    Args:
        x: any shape.
        rate: the probability of dropping an element (not the keep rate).
        mask: keep mask (True or nonzero keeps), of `x`'s shape or broadcastable to it.

    Returns:
        The shape of `x`; the gradient is masked and scaled the same way.
    """
    return _dropout_vjp(_check_rate(rate), x, check_mask(mask, x.shape))


class Dropout(nnx.Module):
    """Drop-in for `flax.nnx.Dropout`; `__call__` also takes an explicit keep `mask`.

    Without a mask it draws one exactly as `flax.nnx.Dropout` does (same Rngs, same mask).
    The two frameworks' RNGs differ, so matching torch means passing the same mask to both.

    Example:
        >>> layer = Dropout(0.5, rngs=nnx.Rngs(dropout=0))
        >>> layer(jnp.ones((2, 3)), mask=jnp.array([True, False, True])).tolist()
        [[2.0, 0.0, 2.0], [2.0, 0.0, 2.0]]
    """

    def __init__(
        self,
        rate: float,
        *,
        broadcast_dims: Sequence[int] = (),
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ):
        self.rate = _check_rate(rate)
        self.broadcast_dims = broadcast_dims
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        # Forked as flax.nnx.Dropout does, so equal Rngs draw equal masks.
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs[self.rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise ValueError(f"`rngs` (={type(rngs).__name__}) must be an nnx.Rngs, nnx.RngStream or None")

    def __call__(
        self,
        inputs: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """`inputs * mask / (1 - rate)`, or `inputs` when deterministic.

        Args:
            inputs: any shape.
            deterministic: overrides the constructor's flag; True returns `inputs` as is.
            rngs: a key, RngStream or Rngs to draw the mask from, instead of the layer's own.
            mask: an explicit keep mask (True keeps) of `inputs`' shape, or of the shape
                with `broadcast_dims` set to 1; no random bits are drawn then.
        """
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic is None:
            raise ValueError("`deterministic` (=None) must be given to Dropout, in its constructor or call")
        if self.rate == 0.0 or deterministic:
            return inputs
        if mask is None:
            mask = self._draw(inputs, rngs)
        return dropout(inputs, self.rate, mask)

    def _draw(self, inputs, rngs):
        if self.rate == 1.0:  # flax draws nothing here either
            return jnp.zeros(inputs.shape, bool)
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        elif isinstance(rngs, jax.Array):
            key = rngs
        else:
            raise ValueError(
                f"`rngs` (={type(rngs).__name__}) must be an nnx.Rngs, nnx.RngStream or key when no `mask` is given"
            )
        shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            shape[dim] = 1
        return jax.random.bernoulli(key, p=1.0 - self.rate, shape=shape, out_sharding=jax.typeof(inputs).sharding)

    def set_view(self, deterministic: bool | None = None):
        """Used by `nnx.view`, as in flax: `deterministic=True` turns dropout off."""
        if deterministic is not None:
            self.deterministic = deterministic
