"""A row appended to the projected keys or values (torch's `add_bias_kv` / `add_zero_attn`),
with a hand-written VJP.

flax.nnx.MultiHeadAttention has neither option; `multi_head_attention` takes them so that a
torch.nn.MultiheadAttention that uses them has a JAX counterpart.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _append(x, row):
    tail = jnp.zeros((*x.shape[:-3], 1, *x.shape[-2:]), x.dtype) if row is None else row
    return jnp.concatenate([x, jnp.broadcast_to(tail, (*x.shape[:-3], 1, *x.shape[-2:])).astype(x.dtype)], axis=-3)


_append_vjp = jax.custom_vjp(_append)


def _append_fwd(x, row):
    # No residuals: the shapes alone say where each cotangent goes.
    return _append(x, row), None if row is None else jnp.zeros((0,), row.dtype)


def _append_bwd(res, g):
    """`x` gets every row of the cotangent but the last; `row` the last, summed over the batch
    axes, since one row was broadcast to every batch element."""
    grad_row = None if res is None else jnp.sum(g[..., -1, :, :], axis=tuple(range(g.ndim - 3))).astype(res.dtype)
    return g[..., :-1, :, :], grad_row


_append_vjp.defvjp(_append_fwd, _append_bwd)


def append_row(x: jax.Array, row: jax.Array | None, name: str) -> jax.Array:
    """`x (..., S, heads, head_dim)` with `row (heads, head_dim)` (None: zeros) appended as
    position `S + 1`; `name` for errors."""
    if row is not None and tuple(row.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"`{name}` (shape {tuple(row.shape)}) must be (heads, head_dim) = {tuple(x.shape[-2:])}")
    return _append_vjp(x, row)
