"""NNX modules called in torch's argument order, for the cases whose two modules differ in it.

They live at module level, not inside the case factories, so that a built module can be
pickled by reference (the program cache keeps each module's abstract build). This module
imports JAX and the layers; the case files import it only inside their factories.
"""

from __future__ import annotations

from jax_layers.attention import DotProductAttention, MultiHeadAttention
from jax_layers.recurrent import GRUCell, LSTMCell


class MaskLast(DotProductAttention):
    """Takes torch's single `attn_mask` slot: a bool mask, or (`additive`) a float bias."""

    def __init__(self, *, additive: bool, **kwargs):
        super().__init__(**kwargs)
        self.additive = additive

    def __call__(self, q, k, v, m=None):
        return super().__call__(q, k, v, m) if self.additive else super().__call__(q, k, v, None, m)


class PaddedMultiHeadAttention(MultiHeadAttention):
    """Calls as `(q, k, v[, key_padding_mask])`, the mask in torch's sense (True = ignore)."""

    def __call__(self, q, k, v, kpm=None):
        return super().__call__(q, k, v, mask=None if kpm is None else ~kpm[:, None, None, :])


class LSTMCellXHC(LSTMCell):
    """Calls as `(x, h, c)` and returns `(h', c')`, as torch's cell does."""

    def __call__(self, x, h, c):
        (c_new, h_new), _ = super().__call__((c, h), x)
        return h_new, c_new


class GRUCellXH(GRUCell):
    """Calls as `(x, h)` and returns `h'`, as torch's cell does."""

    def __call__(self, x, h):
        return super().__call__(h, x)[1]
