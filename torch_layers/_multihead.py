"""Multi-head attention: `torch.nn.MultiheadAttention` and its functional form, with a
hand-written backward.

The family's public names are re-exported by `torch_layers.attention` (one family, one file
per side; this module keeps that file readable). Everything differentiable here is a piece
with its own backward: the projections (`linear`), the appended key/value rows
(`append_row`) and the attention itself (`AttentionFunction`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._kv import append_row
from .attention import AttentionFunction, _keep_for
from .dropout import _check_p
from .linear import Linear, linear


def _canonical_mask(mask, name, dtype):
    """A bool mask (True = masked out, torch.nn.MultiheadAttention's sense) -> additive float."""
    if mask is None or mask.is_floating_point():
        if mask is not None and mask.dtype != dtype:
            raise ValueError(f"`{name}` dtype (={mask.dtype}) must be bool or the query dtype (={dtype})")
        return mask
    if mask.dtype != torch.bool:
        raise ValueError(f"`{name}` dtype (={mask.dtype}) must be bool or floating")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)


def _check_mha(query, key, value, embed_dim_to_check, num_heads, static_k, static_v):
    for name, t in (("static_k", static_k), ("static_v", static_v)):
        if t is not None:
            raise ValueError(
                f"`{name}` (shape {tuple(t.shape)}) is not supported (a key/value cache outside the "
                "projections, which torch.nn.MultiheadAttention never passes); use "
                "torch.nn.functional.multi_head_attention_forward"
            )
    if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(
            f"`query`, `key`, `value` (shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}) "
            "must all be 3-D (batched) or all 2-D (unbatched)"
        )
    if query.shape[-1] != embed_dim_to_check:
        raise ValueError(f"`query` embedding dim (={query.shape[-1]}) must be `embed_dim` (={embed_dim_to_check})")
    if embed_dim_to_check % num_heads:
        raise ValueError(f"`embed_dim` (={embed_dim_to_check}) must be divisible by `num_heads` (={num_heads})")
    if key.shape[:-1] != value.shape[:-1]:
        raise ValueError(f"`key` (shape {tuple(key.shape)}) and `value` (shape {tuple(value.shape)}) must match but for the last dim")


def _projection_weights(query, key, value, in_proj_weight, separate, q_w, k_w, v_w):
    """The query, key and value projection weights, `(E, E)`, `(E, kdim)`, `(E, vdim)`."""
    E = query.shape[-1]
    if not separate:
        if in_proj_weight is None or in_proj_weight.shape != (3 * E, E) or key.shape[-1] != E or value.shape[-1] != E:
            raise ValueError(
                f"`in_proj_weight` (={None if in_proj_weight is None else tuple(in_proj_weight.shape)}) must be "
                f"{(3 * E, E)} with keys and values of dim {E} (got {key.shape[-1]}, {value.shape[-1]}); "
                "pass `use_separate_proj_weight` (=False) True otherwise"
            )
        return in_proj_weight.chunk(3)
    for name, w, x in (("q_proj_weight", q_w, query), ("k_proj_weight", k_w, key), ("v_proj_weight", v_w, value)):
        if w is None or w.shape != (E, x.shape[-1]):
            raise ValueError(
                f"`{name}` (={None if w is None else tuple(w.shape)}) must be {(E, x.shape[-1])} with "
                "`use_separate_proj_weight` (=True)"
            )
    return q_w, k_w, v_w


def _padded(mask, extra):
    """An additive mask with `extra` keys appended that every query may attend to."""
    return mask if mask is None or not extra else torch.nn.functional.pad(mask, (0, extra))


def _attention_mask(attn_mask, key_padding_mask, is_causal, need_weights, shape, extra, dtype):
    """`(mask, causal)`: one additive mask broadcastable to the weights `(N, H, L, S + extra)`
    (or None) from torch's `attn_mask` and `key_padding_mask` (True = masked out), for
    `shape = (N, H, L, S)`; `causal` where the `is_causal` hint replaces `attn_mask`."""
    N, H, L, S = shape
    padding = _canonical_mask(key_padding_mask, "key_padding_mask", dtype)
    if is_causal and attn_mask is None:
        raise ValueError("`is_causal` (=True) is a hint about `attn_mask` (=None), which must then be given")
    # As torch does: the hint replaces the mask only where the fused kernel would run.
    causal = is_causal and padding is None and not need_weights and not extra
    mask = None if causal else _canonical_mask(attn_mask, "attn_mask", dtype)
    if mask is not None:
        if mask.shape not in ((L, S), (N * H, L, S)):
            raise ValueError(f"`attn_mask` (shape {tuple(mask.shape)}) must be {(L, S)} or {(N * H, L, S)}")
        mask = _padded(mask, extra)
        mask = mask.reshape(-1, H, L, S + extra) if mask.dim() == 3 else mask
    if padding is not None:
        if padding.shape != (N, S):
            raise ValueError(f"`key_padding_mask` (shape {tuple(padding.shape)}) must be {(N, S)}")
        padding = _padded(padding, extra).reshape(N, 1, 1, S + extra)
        mask = padding if mask is None else mask + padding
    return mask, causal


def multi_head_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: torch.Tensor | None,
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
    *,
    dropout_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop-in for `torch.nn.functional.multi_head_attention_forward` (no `static_k`/`static_v`),
    plus an optional explicit dropout keep mask.

    Args:
        query: `(L, N, E)` or unbatched `(L, E)` (sequence first).
        key: `(S, N, kdim)` or `(S, kdim)`; value: `(S, N, vdim)` or `(S, vdim)`.
        in_proj_weight: `(3E, E)`, the query, key and value projections stacked (kdim = vdim = E).
        in_proj_bias: `(3E,)` or None.
        bias_k, bias_v: `(1, 1, E)` (or `(E,)`) rows appended to the projected keys and values,
            or None (both or neither).
        add_zero_attn: append a row of zeros to the keys and values (after the biases).
        dropout_p: dropout on the attention weights, when `training`.
        out_proj_weight: `(E, E)`; out_proj_bias: `(E,)` or None.
        key_padding_mask: `(N, S)` or `(S,)`; bool (True = ignore that key) or float (added).
        attn_mask: `(L, S)` or `(N * num_heads, L, S)`; bool (True = may NOT attend) or float.
        use_separate_proj_weight: take `q_proj_weight (E, E)`, `k_proj_weight (E, kdim)` and
            `v_proj_weight (E, vdim)` instead of `in_proj_weight`.
        is_causal: a hint that `attn_mask` is the causal mask (which must be given).
        dropout_mask: the keep mask (True or 1 keeps) of the weights `(N, num_heads, L, S')`, or
            broadcastable to it, `S'` counting the appended rows; unbatched, `(num_heads, L, S')`.
            None draws one from torch's generator as the built-in does on CPU. Used only when
            `training` and `dropout_p > 0`.

    Returns:
        `(out (L, N, E), weights)`; weights (after dropout) are `(N, L, S')` averaged over heads,
        or `(N, num_heads, L, S')`, or None without `need_weights`. Rows with every key masked
        out are 0 (the built-in gives NaN there when `need_weights`).
    """
    _check_mha(query, key, value, embed_dim_to_check, num_heads, static_k, static_v)
    if (bias_k is None) != (bias_v is None):
        raise ValueError(f"`bias_k` and `bias_v` (given: {bias_k is not None}, {bias_v is not None}) go together")
    weights_qkv = _projection_weights(query, key, value, in_proj_weight, use_separate_proj_weight,
                                      q_proj_weight, k_proj_weight, v_proj_weight)
    p = _check_p(dropout_p, "dropout_p") if training else 0.0
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    L, N, E = query.shape
    S, H, hd = key.shape[0], num_heads, query.shape[-1] // num_heads
    extra = (bias_k is not None) + bool(add_zero_attn)
    mask, causal = _attention_mask(attn_mask, key_padding_mask, is_causal, need_weights, (N, H, L, S), extra, query.dtype)
    biases = (None, None, None) if in_proj_bias is None else in_proj_bias.chunk(3)
    q, k, v = (linear(x, w, b) for x, w, b in zip((query, key, value), weights_qkv, biases))
    if bias_k is not None:
        k, v = append_row(k, bias_k, "bias_k"), append_row(v, bias_v, "bias_v")
    if add_zero_attn:
        k, v = append_row(k, None, "add_zero_attn"), append_row(v, None, "add_zero_attn")
    q, k, v = (x.reshape(x.shape[0], N, H, hd).permute(1, 2, 0, 3) for x in (q, k, v))  # (N, H, T, hd)
    keep = _keep_for(p, dropout_mask if p else None, (N, H, L, S + extra), query.dtype, query.device)
    out, weights = AttentionFunction.apply(q, k, v, mask, keep, causal, 1.0 / math.sqrt(hd), p)
    out = linear(out.permute(2, 0, 1, 3).reshape(L, N, E), out_proj_weight, out_proj_bias)
    if average_attn_weights:
        weights = weights.mean(1)
    if not batched:
        out, weights = out.squeeze(1), weights.squeeze(0)
    return out, weights if need_weights else None


class MultiheadAttention(nn.Module):
    """Drop-in for `torch.nn.MultiheadAttention`; `forward` also takes a dropout keep mask.

    Parameters as the built-in's, drawn in its order, so `torch.manual_seed` gives the same
    values and its `state_dict` loads as is: `in_proj_weight (3E, E)` where `kdim == vdim == E`,
    else `q_proj_weight (E, E)`, `k_proj_weight (E, kdim)`, `v_proj_weight (E, vdim)`;
    `in_proj_bias (3E,)`, `out_proj.weight (E, E)`, `out_proj.bias (E,)`, and with
    `add_bias_kv` `bias_k`, `bias_v (1, 1, E)`.
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
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = _check_p(dropout, "dropout")
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty((3 * embed_dim, embed_dim), **factory))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty((embed_dim, embed_dim), **factory))
            self.k_proj_weight = nn.Parameter(torch.empty((embed_dim, self.kdim), **factory))
            self.v_proj_weight = nn.Parameter(torch.empty((embed_dim, self.vdim), **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        # Built (and so drawn) before the projections' init, as in the built-in.
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty((1, 1, embed_dim), **factory))
            self.bias_v = nn.Parameter(torch.empty((1, 1, embed_dim), **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The built-in's draws, in its order.
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                nn.init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

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
        *,
        dropout_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Shapes as in `multi_head_attention_forward`, but `(N, L, E)` when `batch_first`;
        `dropout_mask` (in training mode only) as there."""
        flip = self.batch_first and query.dim() == 3
        if flip:
            query, key, value = (x.transpose(1, 0) for x in (query, key, value))
        separate = not self._qkv_same_embed_dim
        out, weights = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, self.in_proj_weight, self.in_proj_bias,
            self.bias_k, self.bias_v, self.add_zero_attn, self.dropout, self.out_proj.weight, self.out_proj.bias,
            training=self.training, key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, use_separate_proj_weight=separate, q_proj_weight=self.q_proj_weight,
            k_proj_weight=self.k_proj_weight, v_proj_weight=self.v_proj_weight,
            average_attn_weights=average_attn_weights, is_causal=is_causal, dropout_mask=dropout_mask,
        )
        return (out.transpose(1, 0) if flip else out), weights
