"""Multi-head attention: `flax.nnx.MultiHeadAttention` and its forward as a function of its
parameters, with a hand-written VJP.

The family's public names are re-exported by `jax_layers.attention` (one family, one file
per side; this module keeps that file readable). Everything differentiable here is a piece
with its own VJP: the projections (`linear`), the appended key/value rows (`append_row`) and
the attention itself (`_attend`).
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
from .attention import _attend, _unsupported, nnx_attention_fn
from .dropout import _check_rate
from .linear import linear

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()


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
