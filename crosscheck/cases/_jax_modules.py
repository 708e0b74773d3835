"""NNX modules called in torch's argument order, for the cases whose two modules differ in it.

They live at module level, not inside the case factories, so that a built module can be
pickled by reference (the program cache keeps each module's abstract build). This module
imports JAX and the layers; the case files import it only inside their factories.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jax_layers.attention import DotProductAttention, MultiHeadAttention, multi_head_attention, nnx_attention_fn
from jax_layers.recurrent import GRUCell, LSTMCell


class MaskLast(DotProductAttention):
    """Takes torch's single `attn_mask` slot: a bool mask, or (`additive`) a float bias; with a
    `dropout_rate`, dropout through flax.nnx.dot_product_attention's counterpart."""

    def __init__(self, *, additive: bool, dropout_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.additive, self.dropout_rate = additive, dropout_rate

    def __call__(self, q, k, v, m=None, *, dropout_mask=None):
        bias, mask = (m, None) if self.additive else (None, m)
        if not self.dropout_rate:
            return super().__call__(q, k, v, bias, mask)
        return nnx_attention_fn(q, k, v, bias, mask, dropout_rate=self.dropout_rate, is_causal=self.is_causal,
                                dropout_mask=dropout_mask)


class PaddedMultiHeadAttention(MultiHeadAttention):
    """Calls as `(q, k, v[, key_padding_mask])`, the mask in torch's sense (True = ignore)."""

    def __call__(self, q, k, v, kpm=None, *, dropout_mask=None):
        return super().__call__(q, k, v, mask=None if kpm is None else ~kpm[:, None, None, :], dropout_mask=dropout_mask)


class RowsMultiHeadAttention(PaddedMultiHeadAttention):
    """What flax.nnx.MultiHeadAttention lacks: keys and values of their own sizes (`kdim`,
    `vdim`) and torch's appended rows, `bias_k`/`bias_v (heads, head_dim)` (`add_bias_kv`) and
    zeros (`add_zero_attn`), through `multi_head_attention`."""

    def __init__(self, num_heads, in_features, kdim, vdim, *, add_bias_kv, add_zero_attn, rngs, **kwargs):
        super().__init__(num_heads, in_features, in_kv_features=kdim, rngs=rngs, **kwargs)
        # The value projection of another module, built for inputs of size vdim.
        self.value = MultiHeadAttention(num_heads, in_features, in_kv_features=vdim, rngs=rngs, **kwargs).value
        shape, dtype = (num_heads, self.head_dim), kwargs.get("param_dtype")
        self.bias_k = nnx.Param(jnp.zeros(shape, dtype)) if add_bias_kv else nnx.data(None)
        self.bias_v = nnx.Param(jnp.zeros(shape, dtype)) if add_bias_kv else nnx.data(None)
        self.add_zero_attn = add_zero_attn

    def __call__(self, q, k, v, kpm=None, *, dropout_mask=None):
        projections = (self.query, self.key, self.value, self.out)
        rows = {} if self.bias_k is None else {"bias_k": self.bias_k[...], "bias_v": self.bias_v[...]}
        return multi_head_attention(
            q, k, v, *(m.kernel[...] for m in projections), *(m.bias[...] for m in projections),
            mask=None if kpm is None else ~kpm[:, None, None, :], add_zero_attn=self.add_zero_attn,
            dropout_rate=self.dropout_rate, dropout_mask=dropout_mask, **rows,
        )


class LSTMCellXHC(LSTMCell):
    """Calls as `(x, h, c)` and returns `(h', c')`, as torch's cell does."""

    def __call__(self, x, h, c):
        (c_new, h_new), _ = super().__call__((c, h), x)
        return h_new, c_new


class GRUCellXH(GRUCell):
    """Calls as `(x, h)` and returns `h'`, as torch's cell does."""

    def __call__(self, x, h):
        return super().__call__(h, x)[1]
