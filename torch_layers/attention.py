"""Attention: scaled dot-product attention and multi-head attention, with a hand-written backward.

The backward recomputes the attention weights from the saved query, key and mask (as flash
attention does) instead of saving them: every tensor it reads is then a forward input, so the
backward is itself differentiable and double backward works. The layout is torch's:
`(..., L, E)` queries against `(..., S, E)` keys and `(..., S, Ev)` values.

Fully masked rows (every key masked out) give weights 0 and output 0, as
`torch.nn.functional.scaled_dot_product_attention` does; the JAX side follows
`jax.nn.dot_product_attention` instead (a uniform average), so cases avoid such rows.

Multi-head attention, built on `AttentionFunction`, is in `_multihead.py` and re-exported here,
so that the family keeps one public file per side.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dropout import _check_p, _noise, check_mask


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision logits and softmax lose too much; both frameworks accumulate in float32.
    return torch.promote_types(dtype, torch.float32)


def _softmax(s: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis that maps a row of `-inf` to zeros instead of NaN."""
    if s.shape[-1] == 0:
        return s
    m = s.amax(-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)
    z = e.sum(-1, keepdim=True)
    return e / torch.where(z == 0, torch.ones_like(z), z)


def _probs(query, key, attn_mask, is_causal: bool, scale: float) -> torch.Tensor:
    """Attention weights `(..., L, S)`, all in the compute dtype."""
    s = torch.matmul(query, key.mT) * scale
    if attn_mask is not None:
        s = torch.where(attn_mask, s, -math.inf) if attn_mask.dtype == torch.bool else s + attn_mask
    if is_causal:
        L, S = s.shape[-2:]
        s = torch.where(torch.ones(L, S, dtype=torch.bool, device=s.device).tril(), s, -math.inf)
    return _softmax(s)


def _cast(x, dtype):
    return x if x is None or x.dtype == torch.bool else x.to(dtype)


def _dropped(p, keep, dropout_p):
    """The dropout multiplier `keep / (1 - dropout_p)` in `p`'s dtype, or None without dropout."""
    return None if keep is None else _noise(keep, dropout_p, p.dtype)


def attention_grads(needs, query, key, value, attn_mask, keep, is_causal, scale, dropout_p, grad_out, grad_weights):
    """Gradients of `(out, weights)` w.r.t. `(query, key, value, attn_mask)`.

    With `P = softmax(S)`, `S = scale Q K^T + M`, dropout's multiplier `D = keep / (1 - p)`
    (1 without dropout), `W = P * D` and `O = W V`:
    `dV = W^T dO`, `dW = dO V^T + dWeights`, `dP = dW * D`, `dS = P * (dP - rowsum(dP * P))`,
    `dQ = scale dS K`, `dK = scale dS^T Q`, `dM = dS` (summed over broadcast dims).
    """
    cd = _compute_dtype(query.dtype)
    q, k, v, m = (_cast(t, cd) for t in (query, key, value, attn_mask))
    go, gw = grad_out.to(cd), grad_weights.to(cd)
    p = _probs(q, k, m, is_causal, scale)
    d = _dropped(p, keep, dropout_p)
    grad_q = grad_k = grad_v = grad_m = None
    if needs[2]:
        w = p if d is None else p * d
        grad_v = torch.matmul(w.mT, go).sum_to_size(value.shape).to(value.dtype)
    if needs[0] or needs[1] or needs[3]:
        dp = torch.matmul(go, v.mT) + gw
        if d is not None:
            dp = dp * d
        ds = p * (dp - (dp * p).sum(-1, keepdim=True))
        if needs[0]:
            grad_q = (torch.matmul(ds, k) * scale).sum_to_size(query.shape).to(query.dtype)
        if needs[1]:
            grad_k = (torch.matmul(ds.mT, q) * scale).sum_to_size(key.shape).to(key.dtype)
        if needs[3]:
            grad_m = ds.sum_to_size(attn_mask.shape).to(attn_mask.dtype)
    return grad_q, grad_k, grad_v, grad_m


class AttentionFunction(torch.autograd.Function):
    """`(out, weights)` of `dropout(softmax(scale q k^T + mask)) v`.

    Inputs `query (..., L, E)`, `key (..., S, E)`, `value (..., S, Ev)` (batch dims broadcast),
    `attn_mask` None, bool (True = take part) or float (added), broadcastable to `(..., L, S)`,
    `keep` None (no dropout) or dropout's keep mask (bool or 0/1, broadcastable to `(..., L, S)`),
    `is_causal` (top-left aligned: query `i` sees keys `j <= i`), a float `scale` and the
    dropout probability `dropout_p` (the weights kept are divided by `1 - dropout_p`).
    Outputs `out (..., L, Ev)` and the weights after dropout `(..., L, S)`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(query, key, value, attn_mask, keep, is_causal, scale, dropout_p):
        cd = _compute_dtype(query.dtype)
        p = _probs(query.to(cd), key.to(cd), _cast(attn_mask, cd), is_causal, scale)
        d = _dropped(p, keep, dropout_p)
        w = p if d is None else p * d
        out = torch.matmul(w, value.to(cd))
        return out.to(query.dtype), w.to(query.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        query, key, value, attn_mask, keep, is_causal, scale, dropout_p = inputs
        ctx.save_for_backward(query, key, value, attn_mask, keep)
        ctx.is_causal, ctx.scale, ctx.dropout_p = is_causal, scale, dropout_p

    @staticmethod
    def backward(ctx, grad_out, grad_weights):
        query, key, value, attn_mask, keep = ctx.saved_tensors
        grads = attention_grads(
            ctx.needs_input_grad, query, key, value, attn_mask, keep, ctx.is_causal, ctx.scale, ctx.dropout_p,
            grad_out, grad_weights,
        )
        return (*grads, None, None, None, None)


def draw_keep(shape, dropout_p, dtype, device):
    """A keep mask drawn from torch's generator as the built-in attention draws it on CPU (a
    bernoulli(1 - p) tensor of the weights' shape; nothing drawn at p = 1), so that the same
    seed drops the same weights."""
    if dropout_p == 1:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1 - dropout_p).bool()


def _keep_for(dropout_p, dropout_mask, weights_shape, dtype, device):
    """The keep mask to apply: None without dropout, else `dropout_mask` or a fresh draw."""
    if dropout_p == 0:
        if dropout_mask is not None:
            raise ValueError(f"`dropout_mask` (shape {tuple(dropout_mask.shape)}) was given with `dropout_p` (=0.0)")
        return None
    if dropout_mask is None:
        return draw_keep(weights_shape, dropout_p, _compute_dtype(dtype), device)
    return check_mask(dropout_mask, weights_shape, "the attention weights' shape", "dropout_mask")


def _check_attention(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa):
    _check_p(dropout_p, "dropout_p")
    if attn_mask is not None and is_causal:
        raise ValueError(f"`attn_mask` (shape {tuple(attn_mask.shape)}) must be None when `is_causal` (=True)")
    if not query.dtype == key.dtype == value.dtype:
        raise ValueError(f"`query`, `key`, `value` dtypes (={query.dtype}, {key.dtype}, {value.dtype}) must match")
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise ValueError(f"`query` (shape {tuple(query.shape)}), `key`, `value` must be at least 2-D")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"`key` (shape {tuple(key.shape)}) must share E with `query` (shape {tuple(query.shape)}) "
            f"and S with `value` (shape {tuple(value.shape)})"
        )
    if query.dim() >= 3 and key.dim() >= 3 and query.shape[-3] != key.shape[-3]:
        if enable_gqa:
            raise ValueError(
                f"`enable_gqa` (=True) with {query.shape[-3]} query heads and {key.shape[-3]} key heads is not "
                "supported; use torch.nn.functional.scaled_dot_product_attention"
            )
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool and attn_mask.dtype != query.dtype:
            raise ValueError(f"`attn_mask` dtype (={attn_mask.dtype}) must be bool or the query dtype (={query.dtype})")
        try:
            torch.broadcast_shapes(attn_mask.shape, (*query.shape[:-1], key.shape[-2]))
        except RuntimeError:
            raise ValueError(
                f"`attn_mask` (shape {tuple(attn_mask.shape)}) must broadcast to (..., L, S) = "
                f"{(*query.shape[:-1], key.shape[-2])}"
            ) from None


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    dropout_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.scaled_dot_product_attention` (no GQA), plus an optional
    explicit dropout keep mask.

    Args:
        query: `(..., L, E)`, e.g. `(N, heads, L, E)`.
        key: `(..., S, E)`.
        value: `(..., S, Ev)`.
        attn_mask: bool (True = take part) or float (added to the logits, differentiable),
            broadcastable to `(..., L, S)`.
        dropout_p: the probability of dropping an attention weight (after the softmax); the
            kept ones are divided by `1 - dropout_p`, as the built-in does.
        is_causal: top-left aligned causal mask (query `i` sees keys `j <= i`).
        scale: defaults to `1 / sqrt(E)`.
        enable_gqa: only where query and key have the same number of heads.
        dropout_mask: with `dropout_p > 0`, the keep mask (True or 1 keeps), bool or floating,
            broadcastable to the weights' `(..., L, S)`. None draws one from torch's generator
            as the built-in does on CPU (the same seed drops the same weights); pass it to
            match another framework, whose generator differs.

    Returns:
        `(..., L, Ev)`; rows with every key masked out are 0.
    """
    _check_attention(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    weights = (*torch.broadcast_shapes(query.shape[:-2], key.shape[:-2]), query.shape[-2], key.shape[-2])
    keep = _keep_for(dropout_p, dropout_mask, weights, query.dtype, query.device)
    return AttentionFunction.apply(query, key, value, attn_mask, keep, is_causal, scale, float(dropout_p))[0]


class ScaledDotProductAttention(nn.Module):
    """`scaled_dot_product_attention` as a module (torch.nn has none); no parameters.

    `dropout_p` applies in training mode only, as in `torch.nn.MultiheadAttention`.
    """

    def __init__(self, is_causal: bool = False, scale: float | None = None, dropout_p: float = 0.0):
        super().__init__()
        self.is_causal, self.scale, self.dropout_p = is_causal, scale, _check_p(dropout_p, "dropout_p")

    def forward(self, query, key, value, attn_mask=None, *, dropout_mask=None):
        """`query (..., L, E)`, `key (..., S, E)`, `value (..., S, Ev)` -> `(..., L, Ev)`;
        `dropout_mask` as in `scaled_dot_product_attention`, ignored in eval mode."""
        p = self.dropout_p if self.training else 0.0
        return scaled_dot_product_attention(
            query, key, value, attn_mask, p, is_causal=self.is_causal, scale=self.scale,
            dropout_mask=dropout_mask if p else None,
        )

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}, scale={self.scale}, dropout_p={self.dropout_p}"


# Multi-head attention lives in its own file (the attention family's second half); imported
# last because it builds on `AttentionFunction` and `_keep_for` above.
from ._multihead import MultiheadAttention as MultiheadAttention
from ._multihead import multi_head_attention_forward as multi_head_attention_forward
