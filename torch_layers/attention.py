"""Attention: scaled dot-product attention and multi-head attention, with a hand-written backward.

The backward recomputes the attention weights from the saved query, key and mask (as flash
attention does) instead of saving them: every tensor it reads is then a forward input, so the
backward is itself differentiable and double backward works. The layout is torch's:
`(..., L, E)` queries against `(..., S, E)` keys and `(..., S, Ev)` values.

Fully masked rows (every key masked out) give weights 0 and output 0, as
`torch.nn.functional.scaled_dot_product_attention` does; the JAX side follows
`jax.nn.dot_product_attention` instead (a uniform average), so cases avoid such rows.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .linear import Linear, linear


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


def attention_grads(needs, query, key, value, attn_mask, is_causal, scale, grad_out, grad_weights):
    """Gradients of `(out, weights)` w.r.t. `(query, key, value, attn_mask)`.

    With `P = softmax(S)`, `S = scale Q K^T + M` and `O = P V`:
    `dV = P^T dO`, `dP = dO V^T + dW`, `dS = P * (dP - rowsum(dP * P))`,
    `dQ = scale dS K`, `dK = scale dS^T Q`, `dM = dS` (summed over broadcast dims).
    """
    cd = _compute_dtype(query.dtype)
    q, k, v, m = (_cast(t, cd) for t in (query, key, value, attn_mask))
    go, gw = grad_out.to(cd), grad_weights.to(cd)
    p = _probs(q, k, m, is_causal, scale)
    grad_q = grad_k = grad_v = grad_m = None
    if needs[2]:
        grad_v = torch.matmul(p.mT, go).sum_to_size(value.shape).to(value.dtype)
    if needs[0] or needs[1] or needs[3]:
        dp = torch.matmul(go, v.mT) + gw
        ds = p * (dp - (dp * p).sum(-1, keepdim=True))
        if needs[0]:
            grad_q = (torch.matmul(ds, k) * scale).sum_to_size(query.shape).to(query.dtype)
        if needs[1]:
            grad_k = (torch.matmul(ds.mT, q) * scale).sum_to_size(key.shape).to(key.dtype)
        if needs[3]:
            grad_m = ds.sum_to_size(attn_mask.shape).to(attn_mask.dtype)
    return grad_q, grad_k, grad_v, grad_m


class AttentionFunction(torch.autograd.Function):
    """`(out, weights)` of `softmax(scale q k^T + mask) v`.

    Inputs `query (..., L, E)`, `key (..., S, E)`, `value (..., S, Ev)` (batch dims broadcast),
    `attn_mask` None, bool (True = take part) or float (added), broadcastable to `(..., L, S)`,
    `is_causal` (top-left aligned: query `i` sees keys `j <= i`) and a float `scale`.
    Outputs `out (..., L, Ev)` and `weights (..., L, S)`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(query, key, value, attn_mask, is_causal, scale):
        cd = _compute_dtype(query.dtype)
        p = _probs(query.to(cd), key.to(cd), _cast(attn_mask, cd), is_causal, scale)
        out = torch.matmul(p, value.to(cd))
        return out.to(query.dtype), p.to(query.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        query, key, value, attn_mask, is_causal, scale = inputs
        ctx.save_for_backward(query, key, value, attn_mask)
        ctx.is_causal, ctx.scale = is_causal, scale

    @staticmethod
    def backward(ctx, grad_out, grad_weights):
        query, key, value, attn_mask = ctx.saved_tensors
        grads = attention_grads(
            ctx.needs_input_grad, query, key, value, attn_mask, ctx.is_causal, ctx.scale, grad_out, grad_weights
        )
        return (*grads, None, None)


def _check_attention(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa):
    if dropout_p != 0.0:
        raise ValueError(f"`dropout_p` (={dropout_p}) must be 0: dropout is not supported")
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
            raise ValueError(f"`enable_gqa` (=True) with {query.shape[-3]} query heads and {key.shape[-3]} key heads is not supported")
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
) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.scaled_dot_product_attention` (no dropout, no GQA).

    Args:
        query: `(..., L, E)`, e.g. `(N, heads, L, E)`.
        key: `(..., S, E)`.
        value: `(..., S, Ev)`.
        attn_mask: bool (True = take part) or float (added to the logits, differentiable),
            broadcastable to `(..., L, S)`.
        dropout_p: must be 0.
        is_causal: top-left aligned causal mask (query `i` sees keys `j <= i`).
        scale: defaults to `1 / sqrt(E)`.
        enable_gqa: only where query and key have the same number of heads.

    Returns:
        `(..., L, Ev)`; rows with every key masked out are 0.
    """
    _check_attention(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    return AttentionFunction.apply(query, key, value, attn_mask, is_causal, scale)[0]


class ScaledDotProductAttention(nn.Module):
    """`scaled_dot_product_attention` as a module (torch.nn has none); no parameters."""

    def __init__(self, is_causal: bool = False, scale: float | None = None):
        super().__init__()
        self.is_causal, self.scale = is_causal, scale

    def forward(self, query, key, value, attn_mask=None):
        """`query (..., L, E)`, `key (..., S, E)`, `value (..., S, Ev)` -> `(..., L, Ev)`."""
        return scaled_dot_product_attention(query, key, value, attn_mask, is_causal=self.is_causal, scale=self.scale)

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}, scale={self.scale}"


def _canonical_mask(mask, name, dtype):
    """A bool mask (True = masked out, torch.nn.MultiheadAttention's sense) -> additive float."""
    if mask is None or mask.is_floating_point():
        if mask is not None and mask.dtype != dtype:
            raise ValueError(f"`{name}` dtype (={mask.dtype}) must be bool or the query dtype (={dtype})")
        return mask
    if mask.dtype != torch.bool:
        raise ValueError(f"`{name}` dtype (={mask.dtype}) must be bool or floating")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)


def _check_mha(query, key, value, embed_dim_to_check, num_heads, unsupported):
    for name, value_, ok in unsupported:
        if not ok:
            raise ValueError(f"`{name}` (={value_}) is not supported")
    if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(
            f"`query`, `key`, `value` (shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}) "
            "must all be 3-D (batched) or all 2-D (unbatched)"
        )
    if query.shape[-1] != embed_dim_to_check:
        raise ValueError(f"`query` embedding dim (={query.shape[-1]}) must be `embed_dim` (={embed_dim_to_check})")
    if embed_dim_to_check % num_heads:
        raise ValueError(f"`embed_dim` (={embed_dim_to_check}) must be divisible by `num_heads` (={num_heads})")
    if key.shape != value.shape:
        raise ValueError(f"`key` (shape {tuple(key.shape)}) and `value` (shape {tuple(value.shape)}) must match")


def multi_head_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: torch.Tensor,
    in_proj_bias: torch.Tensor | None,
    bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    training: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: torch.Tensor | None = None,
    k_proj_weight: torch.Tensor | None = None,
    v_proj_weight: torch.Tensor | None = None,
    static_k: torch.Tensor | None = None,
    static_v: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop-in for `torch.nn.functional.multi_head_attention_forward` (packed weights, no dropout).

    Args:
        query: `(L, N, E)` or unbatched `(L, E)` (sequence first).
        key, value: `(S, N, E)` or `(S, E)`.
        in_proj_weight: `(3E, E)`, the query, key and value projections stacked.
        in_proj_bias: `(3E,)` or None.
        out_proj_weight: `(E, E)`; out_proj_bias: `(E,)` or None.
        key_padding_mask: `(N, S)` or `(S,)`; bool (True = ignore that key) or float (added).
        attn_mask: `(L, S)` or `(N * num_heads, L, S)`; bool (True = may NOT attend) or float.
        is_causal: a hint that `attn_mask` is the causal mask (which must be given).
        bias_k, bias_v, static_k, static_v: must be None; add_zero_attn, use_separate_proj_weight:
            must be False; dropout_p: must be 0 unless `training` is False.

    Returns:
        `(out (L, N, E), weights)`; weights are `(N, L, S)` averaged over heads, or
        `(N, num_heads, L, S)`, or None without `need_weights`. Rows with every key masked
        out are 0 (the built-in gives NaN there when `need_weights`).
    """
    _check_mha(query, key, value, embed_dim_to_check, num_heads, [
        ("bias_k", None if bias_k is None else tuple(bias_k.shape), bias_k is None),
        ("bias_v", None if bias_v is None else tuple(bias_v.shape), bias_v is None),
        ("add_zero_attn", add_zero_attn, not add_zero_attn),
        ("dropout_p", dropout_p, dropout_p == 0.0 or not training),
        ("use_separate_proj_weight", use_separate_proj_weight, not use_separate_proj_weight),
        ("static_k", None if static_k is None else tuple(static_k.shape), static_k is None),
        ("static_v", None if static_v is None else tuple(static_v.shape), static_v is None),
    ])
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    L, N, E = query.shape
    S, H, hd = key.shape[0], num_heads, query.shape[-1] // num_heads
    padding = _canonical_mask(key_padding_mask, "key_padding_mask", query.dtype)
    if is_causal and attn_mask is None:
        raise ValueError("`is_causal` (=True) is a hint about `attn_mask` (=None), which must then be given")
    # As torch does: the hint replaces the mask only where the fused kernel would run.
    causal = is_causal and padding is None and not need_weights
    mask = None if causal else _canonical_mask(attn_mask, "attn_mask", query.dtype)
    if mask is not None:
        if mask.shape not in ((L, S), (N * H, L, S)):
            raise ValueError(f"`attn_mask` (shape {tuple(mask.shape)}) must be {(L, S)} or {(N * H, L, S)}")
        mask = mask.reshape(-1, H, L, S) if mask.dim() == 3 else mask
    if padding is not None:
        if padding.shape != (N, S):
            raise ValueError(f"`key_padding_mask` (shape {tuple(padding.shape)}) must be {(N, S)}")
        padding = padding.reshape(N, 1, 1, S)
        mask = padding if mask is None else mask + padding
    biases = (None, None, None) if in_proj_bias is None else in_proj_bias.chunk(3)

    def heads(x, w, b):  # (T, N, E) -> (N, H, T, hd)
        return linear(x, w, b).reshape(x.shape[0], N, H, hd).permute(1, 2, 0, 3)

    q, k, v = (heads(x, w, b) for x, w, b in zip((query, key, value), in_proj_weight.chunk(3), biases))
    out, weights = AttentionFunction.apply(q, k, v, mask, causal, 1.0 / math.sqrt(hd))
    out = linear(out.permute(2, 0, 1, 3).reshape(L, N, E), out_proj_weight, out_proj_bias)
    if average_attn_weights:
        weights = weights.mean(1)
    if not batched:
        out, weights = out.squeeze(1), weights.squeeze(0)
    return out, weights if need_weights else None


class MultiheadAttention(nn.Module):
    """Drop-in for `torch.nn.MultiheadAttention` with `kdim == vdim == embed_dim`, no dropout.

    Parameters `in_proj_weight (3E, E)`, `in_proj_bias (3E,)`, `out_proj.weight (E, E)`,
    `out_proj.bias (E,)`, drawn in the built-in's order, so `torch.manual_seed` gives the same
    values and its `state_dict` loads as is.
    """

    def __init__(
        self,
        embed_dim,
        num_heads,
        dropout=0.0,
        bias=True,
        add_bias_kv=False,
        add_zero_attn=False,
        kdim=None,
        vdim=None,
        batch_first=False,
        device=None,
        dtype=None,
    ):
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"`embed_dim` (={embed_dim}) and `num_heads` (={num_heads}) must be positive, "
                "and embed_dim divisible by num_heads"
            )
        for name, value, default in (
            ("dropout", dropout, 0.0),
            ("add_bias_kv", add_bias_kv, False),
            ("add_zero_attn", add_zero_attn, False),
            ("kdim", kdim, embed_dim),
            ("vdim", vdim, embed_dim),
        ):
            if value not in (None, default):
                raise ValueError(f"`{name}` (={value}) is not supported (only {default})")
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = self.kdim = self.vdim = embed_dim
        self._qkv_same_embed_dim = True
        self.num_heads = num_heads
        self.dropout = 0.0
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty((3 * embed_dim, embed_dim), **factory))
        for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            self.register_parameter(name, None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        # Built (and so drawn) before in_proj_weight's init, as in the built-in.
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Shapes as in `multi_head_attention_forward`, but `(N, L, E)` when `batch_first`."""
        flip = self.batch_first and query.dim() == 3
        if flip:
            query, key, value = (x.transpose(1, 0) for x in (query, key, value))
        out, weights = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, self.in_proj_weight, self.in_proj_bias,
            None, None, False, self.dropout, self.out_proj.weight, self.out_proj.bias,
            training=self.training, key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal,
        )
        return (out.transpose(1, 0) if flip else out), weights
