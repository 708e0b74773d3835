"""Attention: `jax.nn.dot_product_attention` and `flax.nnx.MultiHeadAttention`, with a hand-written VJP.

Layout is JAX's: queries `(B, T, N, H)`, keys and values `(B, S, N, H)`, logits `(B, N, T, S)`.
The bwd rule recomputes the weights from the residual query, key, bias and mask (as flash
attention does): the residuals are the inputs themselves, so grad-of-grad works.

Masked logits become a large negative number, as in `jax.nn.dot_product_attention`: a row
with every key masked out averages all values uniformly (torch gives 0 there), so cases avoid
such rows. Unlike the built-in, float64 inputs keep float64 logits and softmax.

Multi-head attention, built on `_attend`, is in `_multihead.py` and re-exported here, so that
the family keeps one public file per side.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes

from .dropout import _check_rate, _dropout, check_mask


def _compute_dtype(dtype):
    # Half-precision logits and softmax lose too much; the built-in accumulates in float32 too.
    return jnp.promote_types(dtype, jnp.float32)


def _large_negative(dtype):
    # The built-in's choice: finite, so that a fully masked row stays NaN-free.
    return jnp.asarray(-0.7 * min(float(jnp.finfo(dtype).max), float(jnp.finfo(jnp.float32).max)), dtype)


def _probs(query, key, bias, mask, is_causal, scale):
    """Weights `(..., N, T, S)` from `query (..., T, N, H)` and `key (..., S, N, H)`."""
    s = jnp.einsum("...tnh,...snh->...nts", query, key) * jnp.asarray(scale, query.dtype)
    if bias is not None:
        s = s + bias
    if mask is not None or is_causal:
        keep = jnp.ones((), bool) if mask is None else mask
        if is_causal:
            keep = keep & jnp.tril(jnp.ones(s.shape[-2:], bool))
        s = jnp.where(keep, s, _large_negative(s.dtype))
    if s.shape[-1] == 0:
        return s
    return jax.nn.softmax(s, axis=-1)


def _cast(x, dtype):
    return None if x is None else x.astype(dtype)


def _weights(scale, is_causal, rate, q, k, b, mask, keep):
    """`(P, W)`: the softmax and the weights after dropout (`W = P` without a keep mask)."""
    p = _probs(q, k, b, mask, is_causal, scale)
    return p, (p if keep is None else _dropout(rate, p, keep))


def _attention_impl(scale, is_causal, rate, query, key, value, bias, mask, keep):
    cd = _compute_dtype(query.dtype)
    _, w = _weights(scale, is_causal, rate, query.astype(cd), key.astype(cd), _cast(bias, cd), mask, keep)
    return jnp.einsum("...nts,...snh->...tnh", w, value.astype(cd)).astype(query.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _attention(scale, is_causal, rate, query, key, value, bias, mask, keep):
    return _attention_impl(scale, is_causal, rate, query, key, value, bias, mask, keep)


def _fwd(scale, is_causal, rate, query, key, value, bias, mask, keep):
    out = _attention_impl(scale, is_causal, rate, query, key, value, bias, mask, keep)
    return out, (query, key, value, bias, mask, keep)


def _sum_to(x, shape):
    """Sum `x` down to the broadcastable `shape` (leading axes and size-1 axes)."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return jnp.sum(x, axis=axes, keepdims=True).reshape(shape)


def _bwd(scale, is_causal, rate, res, g):
    """With `P = softmax(S)`, `S = scale Q K^T + bias`, dropout `W = P * keep / (1 - rate)`
    (`W = P` without it) and `O = W V`: `dV = W^T dO`, `dW = dO V^T`, `dP = dW * keep / (1 - rate)`,
    `dS = P * (dP - rowsum(dP * P))`, `dQ = scale dS K`, `dK = scale dS^T Q`, `dbias = dS`."""
    query, key, value, bias, mask, keep = res
    cd = _compute_dtype(query.dtype)
    q, k, v, b, g = query.astype(cd), key.astype(cd), value.astype(cd), _cast(bias, cd), g.astype(cd)
    p, w = _weights(scale, is_causal, rate, q, k, b, mask, keep)
    grad_v = jnp.einsum("...nts,...tnh->...snh", w, g)
    dp = jnp.einsum("...tnh,...snh->...nts", g, v)
    if keep is not None:
        dp = _dropout(rate, dp, keep)
    ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))
    grad_q = jnp.einsum("...nts,...snh->...tnh", ds, k) * scale
    grad_k = jnp.einsum("...nts,...tnh->...snh", ds, q) * scale
    grad_bias = None if bias is None else _sum_to(ds, bias.shape).astype(bias.dtype)
    return grad_q.astype(query.dtype), grad_k.astype(key.dtype), grad_v.astype(value.dtype), grad_bias, None, None


_attention.defvjp(_fwd, _bwd)


def _unsupported(builtin, **options):
    """Refuse the built-in's arguments out of scope here, naming the built-in that takes them."""
    for name, (value, ok) in options.items():
        if not ok:
            raise ValueError(f"`{name}` (={value}) is not supported; use {builtin}")


def _broadcasts(shape, target) -> bool:
    try:
        return jnp.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def _attend(query, key, value, bias, mask, scale, is_causal, rate=0.0, keep=None, dropout_rng=None,
            broadcast_dropout=True):
    """`dot_product_attention`, with dropout of `rate` on the weights: by the keep mask `keep`
    (True keeps), or drawn from `dropout_rng` as flax.nnx.dot_product_attention draws it."""
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if key.shape != value.shape or key.dtype != value.dtype:
        raise ValueError(f"`value` (={value.shape} {value.dtype}) must match `key` (={key.shape} {key.dtype})")
    if query.ndim != key.ndim or query.ndim < 3 or query.dtype != key.dtype:
        raise ValueError(f"`query` (={query.shape} {query.dtype}) must be (B, T, N, H) like `key` (={key.shape} {key.dtype})")
    if query.shape[:-3] != key.shape[:-3] or query.shape[-2:] != key.shape[-2:]:
        raise ValueError(f"`query` (={query.shape}) must share B, N and H with `key` (={key.shape}); GQA is not supported; use jax.nn.dot_product_attention")
    if mask is not None and jnp.asarray(mask).dtype != jnp.bool_:
        raise ValueError(f"`mask` dtype (={jnp.asarray(mask).dtype}) must be bool; pass additive masks as `bias`")
    logits_shape = (*query.shape[:-3], query.shape[-2], query.shape[-3], key.shape[-3])
    for name, t in (("bias", bias), ("mask", mask)):
        if t is not None and not _broadcasts(jnp.shape(t), logits_shape):
            raise ValueError(f"`{name}` (={jnp.shape(t)}) must broadcast to (B, N, T, S) = {logits_shape}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if rate > 0 and keep is None:
        if dropout_rng is None:
            raise ValueError(f"`dropout_rng` (=None) must be given for `dropout_rate` (={rate}) without a `dropout_mask`")
        shape = (1,) * (key.ndim - 2) + logits_shape[-2:] if broadcast_dropout else logits_shape
        keep = jax.random.bernoulli(dropout_rng, 1.0 - rate, shape)
    if keep is not None:
        keep = check_mask(keep, logits_shape, "the attention weights' shape (B, N, T, S)", "dropout_mask")
    return _attention(scale, bool(is_causal), float(rate), query, key, value, bias, mask, keep)


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    *,
    scale: float | None = None,
    is_causal: bool = False,
    query_seq_lengths=None,
    key_value_seq_lengths=None,
    local_window_size=None,
    implementation=None,
    return_residual: bool = False,
) -> jax.Array:
    """Drop-in for `jax.nn.dot_product_attention` (XLA path; no GQA, sequence lengths or windows).

    Args:
        query: `(B, T, N, H)` or unbatched `(T, N, H)` (more leading batch dims work too).
        key, value: `(B, S, N, H)` or `(S, N, H)`.
        bias: added to the logits (differentiable), broadcastable to `(B, N, T, S)`.
        mask: bool, True = take part, broadcastable to `(B, N, T, S)`.
        scale: defaults to `1 / sqrt(H)`.
        is_causal: top-left aligned causal mask (query `t` sees keys `s <= t`).

    Returns:
        `(B, T, N, H)`, the shape of `query`.
    """
    _unsupported(
        "jax.nn.dot_product_attention",
        query_seq_lengths=(query_seq_lengths, query_seq_lengths is None),
        key_value_seq_lengths=(key_value_seq_lengths, key_value_seq_lengths is None),
        local_window_size=(local_window_size, local_window_size is None),
        implementation=(implementation, implementation in (None, "xla")),
        return_residual=(return_residual, not return_residual),
    )
    return _attend(query, key, value, bias, mask, scale, is_causal)


class DotProductAttention(nnx.Module):
    """`dot_product_attention` as a module (flax.nnx has none of that name); no parameters.

    Example:
        >>> q = jnp.ones((2, 4, 3, 5))
        >>> DotProductAttention(is_causal=True)(q, q, q).shape
        (2, 4, 3, 5)
    """

    def __init__(self, *, scale: float | None = None, is_causal: bool = False):
        self.scale, self.is_causal = scale, is_causal

    def __call__(self, query, key, value, bias=None, mask=None):
        """`query (B, T, N, H)`, `key`/`value (B, S, N, H)` -> `(B, T, N, H)`."""
        return dot_product_attention(query, key, value, bias, mask, scale=self.scale, is_causal=self.is_causal)


def nnx_attention_fn(
    query, key, value, bias=None, mask=None, broadcast_dropout=True, dropout_rng=None, dropout_rate=0.0,
    deterministic=False, dtype=None, precision=None, module=None, promote_dtype=dtypes.promote_dtype, is_causal=False,
    *, dropout_mask=None,
):
    """Drop-in for `flax.nnx.dot_product_attention` (no `precision`, no sowing), plus an optional
    explicit dropout keep mask.

    Args:
        query: `(..., T, N, H)`; key, value: `(..., S, N, H)`.
        bias, mask: as in `dot_product_attention`; a non-bool mask is read as bool.
        broadcast_dropout, dropout_rng, dropout_rate, deterministic: as flax's: unless
            `deterministic`, the weights are dropped with probability `dropout_rate` (the kept
            ones divided by `1 - dropout_rate`), by a mask drawn from `dropout_rng` as flax
            draws it, shared over the batch and heads with `broadcast_dropout`. At rate 1 every
            weight is dropped (flax's gives NaN there).
        dropout_mask: the keep mask (True keeps), broadcastable to `(..., N, T, S)`, used
            instead of a draw, so that another framework can drop the same weights.

    Returns:
        `(..., T, N, H)`.
    """
    _unsupported(
        "flax.nnx.dot_product_attention",
        precision=(precision, precision is None),
        module=(module, module is None),
    )
    rate = _check_rate(dropout_rate, "dropout_rate")
    query, key, value = promote_dtype((query, key, value), dtype=dtype)
    if deterministic or rate == 0:
        rate, dropout_mask, dropout_rng = 0.0, None, None
    return _attend(query, key, value, bias, None if mask is None else mask.astype(bool), None, is_causal, rate,
                   dropout_mask, dropout_rng, broadcast_dropout)


# Multi-head attention lives in its own file (the attention family's second half); imported
# last because it builds on `_attend`, `_unsupported` and `nnx_attention_fn` above.
from ._multihead import MultiHeadAttention as MultiHeadAttention
from ._multihead import multi_head_attention as multi_head_attention
