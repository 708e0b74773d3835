"""Attention: `jax.nn.dot_product_attention` and `flax.nnx.MultiHeadAttention`, with a hand-written VJP.

Layout is JAX's: queries `(B, T, N, H)`, keys and values `(B, S, N, H)`, logits `(B, N, T, S)`.
The bwd rule recomputes the weights from the residual query, key, bias and mask (as flash
attention does): the residuals are the inputs themselves, so grad-of-grad works.

Masked logits become a large negative number, as in `jax.nn.dot_product_attention`: a row
with every key masked out averages all values uniformly (torch gives 0 there), so cases avoid
such rows. Unlike the built-in, float64 inputs keep float64 logits and softmax.
"""

from __future__ import annotations

import math
from functools import partial
from types import MappingProxyType

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes

from .linear import linear

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()


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


def _attention_impl(scale, is_causal, query, key, value, bias, mask):
    cd = _compute_dtype(query.dtype)
    p = _probs(query.astype(cd), key.astype(cd), _cast(bias, cd), mask, is_causal, scale)
    return jnp.einsum("...nts,...snh->...tnh", p, value.astype(cd)).astype(query.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _attention(scale, is_causal, query, key, value, bias, mask):
    return _attention_impl(scale, is_causal, query, key, value, bias, mask)


def _fwd(scale, is_causal, query, key, value, bias, mask):
    return _attention_impl(scale, is_causal, query, key, value, bias, mask), (query, key, value, bias, mask)


def _sum_to(x, shape):
    """Sum `x` down to the broadcastable `shape` (leading axes and size-1 axes)."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return jnp.sum(x, axis=axes, keepdims=True).reshape(shape)


def _bwd(scale, is_causal, res, g):
    """With `P = softmax(S)`, `S = scale Q K^T + bias`, `O = P V`: `dV = P^T dO`, `dP = dO V^T`,
    `dS = P * (dP - rowsum(dP * P))`, `dQ = scale dS K`, `dK = scale dS^T Q`, `dbias = dS`."""
    query, key, value, bias, mask = res
    cd = _compute_dtype(query.dtype)
    q, k, v, b, g = query.astype(cd), key.astype(cd), value.astype(cd), _cast(bias, cd), g.astype(cd)
    p = _probs(q, k, b, mask, is_causal, scale)
    grad_v = jnp.einsum("...nts,...tnh->...snh", p, g)
    dp = jnp.einsum("...tnh,...snh->...nts", g, v)
    ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))
    grad_q = jnp.einsum("...nts,...snh->...tnh", ds, k) * scale
    grad_k = jnp.einsum("...nts,...tnh->...snh", ds, q) * scale
    grad_bias = None if bias is None else _sum_to(ds, bias.shape).astype(bias.dtype)
    return grad_q.astype(query.dtype), grad_k.astype(key.dtype), grad_v.astype(value.dtype), grad_bias, None


_attention.defvjp(_fwd, _bwd)


def _unsupported(**options):
    for name, (value, ok) in options.items():
        if not ok:
            raise ValueError(f"`{name}` (={value}) is not supported")


def _broadcasts(shape, target) -> bool:
    try:
        return jnp.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


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
        query_seq_lengths=(query_seq_lengths, query_seq_lengths is None),
        key_value_seq_lengths=(key_value_seq_lengths, key_value_seq_lengths is None),
        local_window_size=(local_window_size, local_window_size is None),
        implementation=(implementation, implementation in (None, "xla")),
        return_residual=(return_residual, not return_residual),
    )
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if key.shape != value.shape or key.dtype != value.dtype:
        raise ValueError(f"`value` (={value.shape} {value.dtype}) must match `key` (={key.shape} {key.dtype})")
    if query.ndim != key.ndim or query.ndim < 3 or query.dtype != key.dtype:
        raise ValueError(f"`query` (={query.shape} {query.dtype}) must be (B, T, N, H) like `key` (={key.shape} {key.dtype})")
    if query.shape[:-3] != key.shape[:-3] or query.shape[-2:] != key.shape[-2:]:
        raise ValueError(f"`query` (={query.shape}) must share B, N and H with `key` (={key.shape}); GQA is not supported")
    if mask is not None and jnp.asarray(mask).dtype != jnp.bool_:
        raise ValueError(f"`mask` dtype (={jnp.asarray(mask).dtype}) must be bool; pass additive masks as `bias`")
    logits_shape = (*query.shape[:-3], query.shape[-2], query.shape[-3], key.shape[-3])
    for name, t in (("bias", bias), ("mask", mask)):
        if t is not None and not _broadcasts(jnp.shape(t), logits_shape):
            raise ValueError(f"`{name}` (={jnp.shape(t)}) must broadcast to (B, N, T, S) = {logits_shape}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    return _attention(scale, bool(is_causal), query, key, value, bias, mask)


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


def _project(x, kernel, bias, n_in: int):
    """Contract the last `n_in` axes of `x` with the first `n_in` of `kernel`, through `linear`."""
    in_shape, out_shape = kernel.shape[:n_in], kernel.shape[n_in:]
    lead = x.shape[: x.ndim - n_in]
    k2 = kernel.reshape(math.prod(in_shape), math.prod(out_shape))
    y = linear(x.reshape(*lead, k2.shape[0]), k2, None if bias is None else bias.reshape(-1))
    return y.reshape(*lead, *out_shape)


def multi_head_attention(
    inputs_q: jax.Array,
    inputs_k: jax.Array,
    inputs_v: jax.Array,
    query_kernel: jax.Array,
    key_kernel: jax.Array,
    value_kernel: jax.Array,
    out_kernel: jax.Array,
    query_bias: jax.Array | None = None,
    key_bias: jax.Array | None = None,
    value_bias: jax.Array | None = None,
    out_bias: jax.Array | None = None,
    *,
    mask: jax.Array | None = None,
    is_causal: bool = False,
) -> jax.Array:
    """`flax.nnx.MultiHeadAttention`'s forward as a function of its parameters.

    Args:
        inputs_q: `(..., T, in)`; inputs_k, inputs_v: `(..., S, in_kv)`.
        query_kernel: `(in, heads, head_dim)`; key_kernel, value_kernel: `(in_kv, heads, head_dim)`.
        out_kernel: `(heads, head_dim, out)`.
        query_bias, key_bias, value_bias: `(heads, head_dim)`; out_bias: `(out,)`.
        mask: bool, True = take part, broadcastable to `(..., heads, T, S)`.

    Returns:
        `(..., T, out)`.
    """
    q = _project(inputs_q, query_kernel, query_bias, 1)
    k = _project(inputs_k, key_kernel, key_bias, 1)
    v = _project(inputs_v, value_kernel, value_bias, 1)
    return _project(dot_product_attention(q, k, v, mask=mask, is_causal=is_causal), out_kernel, out_bias, 2)


def nnx_attention_fn(
    query, key, value, bias=None, mask=None, broadcast_dropout=True, dropout_rng=None, dropout_rate=0.0,
    deterministic=False, dtype=None, precision=None, module=None, promote_dtype=dtypes.promote_dtype, is_causal=False,
):
    """`dot_product_attention` behind `flax.nnx.dot_product_attention`'s signature (no dropout, no sow)."""
    _unsupported(
        dropout_rate=(dropout_rate, dropout_rate == 0.0 or deterministic),
        precision=(precision, precision is None),
        module=(module, module is None),
    )
    query, key, value = promote_dtype((query, key, value), dtype=dtype)
    return dot_product_attention(query, key, value, bias, None if mask is None else mask.astype(bool), is_causal=is_causal)


class _Projection(nnx.Module):
    """`flax.nnx.LinearGeneral` contracting the trailing `len(in_features)` axes: same params and init."""

    def __init__(self, in_features, out_features, *, use_bias, dtype, param_dtype, kernel_init, bias_init,
                 promote_dtype, kernel_metadata, bias_metadata, rngs):
        in_features, out_features = tuple(in_features), tuple(out_features)
        # As LinearGeneral: draw flat `(prod(in), prod(out))`, then reshape.
        flat = (math.prod(in_features), math.prod(out_features))
        kernel = kernel_init(rngs.params(), flat, param_dtype).reshape(*in_features, *out_features)
        self.kernel = nnx.Param(kernel, **kernel_metadata)
        self.bias: nnx.Param | None
        if use_bias:
            bias = bias_init(rngs.params(), (flat[1],), param_dtype).reshape(out_features)
            self.bias = nnx.Param(bias, **bias_metadata)
        else:
            self.bias = nnx.data(None)
        self.in_features, self.out_features = in_features, out_features
        self.dtype, self.promote_dtype = dtype, promote_dtype

    def __call__(self, x):
        bias = None if self.bias is None else self.bias[...]
        x, kernel, bias = self.promote_dtype((x, self.kernel[...], bias), dtype=self.dtype)
        return _project(x, kernel, bias, len(self.in_features))


class MultiHeadAttention(nnx.Module):
    """Drop-in for `flax.nnx.MultiHeadAttention` without dropout, decode, GQA or QK-norm.

    Params `query`/`key`/`value` with `kernel (in, heads, head_dim)` and `bias (heads, head_dim)`,
    `out` with `kernel (heads, head_dim, out)` and `bias (out,)`, drawn in the built-in's key
    order, so equal `Rngs` give equal parameters.

    Example:
        >>> layer = MultiHeadAttention(2, 6, decode=False, rngs=nnx.Rngs(0))
        >>> layer(jnp.ones((3, 4, 6))).shape
        (3, 4, 6)
    """

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        num_kv_heads: int | None = None,
        in_kv_features: int | None = None,
        *,
        dtype=None,
        param_dtype=jnp.float32,
        broadcast_dropout: bool = True,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        precision=None,
        kernel_init=default_kernel_init,
        out_kernel_init=None,
        bias_init=default_bias_init,
        out_bias_init=None,
        use_bias: bool = True,
        attention_fn=nnx_attention_fn,
        decode: bool | None = None,
        normalize_qk: bool = False,
        qkv_promote_dtype=dtypes.promote_dtype,
        out_promote_dtype=dtypes.promote_dtype,
        ln_promote_dtype=dtypes.promote_dtype,
        qkv_dot_general=None,
        out_dot_general=None,
        qkv_dot_general_cls=None,
        out_dot_general_cls=None,
        rngs: nnx.Rngs,
        keep_rngs: bool = True,
        kernel_metadata=MappingProxyType({}),
        out_kernel_metadata=MappingProxyType({}),
        bias_metadata=MappingProxyType({}),
        out_bias_metadata=MappingProxyType({}),
        query_ln_scale_metadata=MappingProxyType({}),
        key_ln_scale_metadata=MappingProxyType({}),
    ):
        _unsupported(
            num_kv_heads=(num_kv_heads, num_kv_heads in (None, num_heads)),
            dropout_rate=(dropout_rate, dropout_rate == 0.0),
            precision=(precision, precision is None),
            normalize_qk=(normalize_qk, not normalize_qk),
            qkv_dot_general=(qkv_dot_general, qkv_dot_general is None and qkv_dot_general_cls is None),
            out_dot_general=(out_dot_general, out_dot_general is None and out_dot_general_cls is None),
        )
        self.num_heads = num_heads
        self.in_features = in_features
        self.qkv_features = qkv_features if qkv_features is not None else in_features
        self.out_features = out_features if out_features is not None else in_features
        self.in_kv_features = in_kv_features if in_kv_features is not None else in_features
        self.num_kv_heads = num_heads
        if self.qkv_features % num_heads:
            raise ValueError(f"`qkv_features` (={self.qkv_features}) must be divisible by `num_heads` (={num_heads})")
        self.dtype, self.param_dtype = dtype, param_dtype
        self.broadcast_dropout, self.dropout_rate, self.deterministic = broadcast_dropout, 0.0, deterministic
        self.precision, self.use_bias, self.attention_fn = None, use_bias, attention_fn
        self.decode, self.normalize_qk = decode, False
        self.qkv_promote_dtype, self.out_promote_dtype, self.ln_promote_dtype = qkv_promote_dtype, out_promote_dtype, ln_promote_dtype
        self.head_dim = self.qkv_features // num_heads
        heads = (num_heads, self.head_dim)
        proj = partial(
            _Projection, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, kernel_init=kernel_init,
            bias_init=bias_init, promote_dtype=qkv_promote_dtype, kernel_metadata=kernel_metadata,
            bias_metadata=bias_metadata, rngs=rngs,
        )
        # The built-in's key order: query, key, value, then out.
        self.query = proj((in_features,), heads)
        self.key = proj((self.in_kv_features,), heads)
        self.value = proj((self.in_kv_features,), heads)
        self.query_ln = nnx.data(None)
        self.key_ln = nnx.data(None)
        self.out = _Projection(
            heads, (self.out_features,), use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
            kernel_init=out_kernel_init or kernel_init, bias_init=out_bias_init or bias_init,
            promote_dtype=out_promote_dtype, kernel_metadata=out_kernel_metadata or kernel_metadata,
            bias_metadata=out_bias_metadata or bias_metadata, rngs=rngs,
        )
        self.rngs = None
        self.cached_key = nnx.data(None)
        self.cached_value = nnx.data(None)
        self.cache_index = nnx.data(None)

    def __call__(
        self,
        inputs_q: jax.Array,
        inputs_k: jax.Array | None = None,
        inputs_v: jax.Array | None = None,
        *,
        mask: jax.Array | None = None,
        deterministic: bool | None = None,
        rngs=None,
        sow_weights: bool = False,
        decode: bool | None = None,
        is_causal: bool = False,
        out_sharding=None,
        qkv_sharding=None,
    ) -> jax.Array:
        """`inputs_q (..., T, in)`, `inputs_k`/`inputs_v (..., S, in_kv)` -> `(..., T, out)`.

        `mask` is bool (True = take part), broadcastable to `(..., heads, T, S)`.
        """
        decode = decode if decode is not None else self.decode
        if decode is None:
            raise ValueError("`decode` (=None) must be given, to the constructor or the call")
        _unsupported(
            decode=(decode, not decode),
            sow_weights=(sow_weights, not sow_weights),
            out_sharding=(out_sharding, out_sharding is None),
            qkv_sharding=(qkv_sharding, qkv_sharding is None),
        )
        if inputs_k is None:
            if inputs_v is not None:
                raise ValueError("`inputs_k` (=None) must be given when `inputs_v` is")
            inputs_k = inputs_q
        if inputs_v is None:
            inputs_v = inputs_k
        if inputs_q.shape[-1] != self.in_features:
            raise ValueError(f"`inputs_q` last dim (={inputs_q.shape[-1]}) must be `in_features` (={self.in_features})")
        x = self.attention_fn(
            self.query(inputs_q), self.key(inputs_k), self.value(inputs_v), mask=mask, dropout_rng=None,
            dropout_rate=0.0, broadcast_dropout=self.broadcast_dropout, deterministic=True, dtype=self.dtype,
            precision=None, module=None, is_causal=is_causal,
        )
        return self.out(x)
