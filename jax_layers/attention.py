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

from ._kv import append_row
from .dropout import _check_rate, _dropout, check_mask
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


def _project(x, kernel, bias, n_in: int):
    """Contract the last `n_in` axes of `x` with the first `n_in` of `kernel`, through `linear`."""
    in_shape, out_shape = kernel.shape[:n_in], kernel.shape[n_in:]
    lead = x.shape[: x.ndim - n_in]
    k2 = kernel.reshape(math.prod(in_shape), math.prod(out_shape))
    y = linear(x.reshape(*lead, k2.shape[0]), k2, None if bias is None else bias.reshape(-1))
    return y.reshape(*lead, *out_shape)


def _append_rows(k, v, mask, bias_k, bias_v, add_zero_attn):
    """Keys, values and bool mask with torch's appended rows: the biases, then zeros."""
    rows = ([(bias_k, bias_v, "bias_k")] if bias_k is not None else []) + ([(None, None, "add_zero_attn")] if add_zero_attn else [])
    if (bias_k is None) != (bias_v is None):
        raise ValueError(f"`bias_k` and `bias_v` (given: {bias_k is not None}, {bias_v is not None}) go together")
    for row_k, row_v, name in rows:
        k, v = append_row(k, row_k, name), append_row(v, row_v, name.replace("_k", "_v"))
    if mask is not None and rows and jnp.shape(mask)[-1] != 1:
        # Every query may attend to the appended keys.
        mask = jnp.pad(jnp.asarray(mask), [(0, 0)] * (jnp.ndim(mask) - 1) + [(0, len(rows))], constant_values=True)
    return k, v, mask


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
    bias_k: jax.Array | None = None,
    bias_v: jax.Array | None = None,
    add_zero_attn: bool = False,
    dropout_rate: float = 0.0,
    dropout_mask: jax.Array | None = None,
    dropout_rng: jax.Array | None = None,
    broadcast_dropout: bool = True,
) -> jax.Array:
    """`flax.nnx.MultiHeadAttention`'s forward as a function of its parameters, with torch's
    `add_bias_kv` / `add_zero_attn` rows.

    Args:
        inputs_q: `(..., T, in)`; inputs_k: `(..., S, in_k)`; inputs_v: `(..., S, in_v)`.
        query_kernel: `(in, heads, head_dim)`; key_kernel: `(in_k, heads, head_dim)`;
            value_kernel: `(in_v, heads, head_dim)`.
        out_kernel: `(heads, head_dim, out)`.
        query_bias, key_bias, value_bias: `(heads, head_dim)`; out_bias: `(out,)`.
        mask: bool, True = take part, broadcastable to `(..., heads, T, S)`.
        bias_k, bias_v: `(heads, head_dim)` rows appended to the projected keys and values
            (torch's `add_bias_kv`), or None; add_zero_attn: append a row of zeros after them.
        dropout_rate, dropout_mask, dropout_rng, broadcast_dropout: dropout on the weights,
            as in `nnx_attention_fn`; the mask's key axis counts the appended rows.

    Returns:
        `(..., T, out)`.
    """
    q = _project(inputs_q, query_kernel, query_bias, 1)
    k = _project(inputs_k, key_kernel, key_bias, 1)
    v = _project(inputs_v, value_kernel, value_bias, 1)
    k, v, mask = _append_rows(k, v, mask, bias_k, bias_v, add_zero_attn)
    rate = _check_rate(dropout_rate, "dropout_rate")
    x = _attend(q, k, v, None, mask, None, is_causal, rate, dropout_mask if rate else None, dropout_rng, broadcast_dropout)
    return _project(x, out_kernel, out_bias, 2)


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
    """Drop-in for `flax.nnx.MultiHeadAttention` without decode, GQA or QK-norm.

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
            "flax.nnx.MultiHeadAttention",
            num_kv_heads=(num_kv_heads, num_kv_heads in (None, num_heads)),
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
        self.broadcast_dropout, self.deterministic = broadcast_dropout, deterministic
        self.dropout_rate = _check_rate(dropout_rate, "dropout_rate")
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
        # As the built-in: a stream of its own for dropout, forked after the parameters' draws.
        self.rngs = rngs.dropout.fork() if keep_rngs and dropout_rate > 0 else None
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
        dropout_mask: jax.Array | None = None,
    ) -> jax.Array:
        """`inputs_q (..., T, in)`, `inputs_k`/`inputs_v (..., S, in_kv)` -> `(..., T, out)`.

        `mask` is bool (True = take part), broadcastable to `(..., heads, T, S)`. With dropout
        (not deterministic), `dropout_mask` (True keeps, broadcastable to `(..., heads, T, S)`)
        replaces the draw from `rngs`, so that another framework can drop the same weights.
        """
        decode = decode if decode is not None else self.decode
        if decode is None:
            raise ValueError("`decode` (=None) must be given, to the constructor or the call")
        _unsupported(
            "flax.nnx.MultiHeadAttention",
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
        deterministic, dropout_rng = self._dropout_rng(deterministic, rngs, dropout_mask)
        # The mask only where given: a user's `attention_fn` need not take it.
        extra = {} if dropout_mask is None else {"dropout_mask": dropout_mask}
        x = self.attention_fn(
            self.query(inputs_q), self.key(inputs_k), self.value(inputs_v), mask=mask, dropout_rng=dropout_rng,
            dropout_rate=self.dropout_rate, broadcast_dropout=self.broadcast_dropout, deterministic=deterministic,
            dtype=self.dtype, precision=None, module=None, is_causal=is_causal, **extra,
        )
        return self.out(x)

    def _dropout_rng(self, deterministic, rngs, dropout_mask):
        """`(deterministic, dropout key)`, resolved as the built-in resolves them."""
        if self.dropout_rate == 0:
            return True, None
        deterministic = deterministic if deterministic is not None else self.deterministic
        if deterministic is None:
            raise ValueError("`deterministic` (=None) must be given, to the constructor or the call, with dropout")
        if deterministic or dropout_mask is not None:
            return deterministic, None
        rngs = self.rngs if rngs is None else rngs.dropout if isinstance(rngs, nnx.Rngs) else rngs
        if rngs is None:
            raise ValueError("`rngs` (=None) must be given to the call without a `dropout_mask` when `keep_rngs` (=False)")
        return False, rngs()
