"""Cases for attention: torch `(N, heads, L, E)` <-> JAX `(N, L, heads, E)`.

Masks keep their `(N, heads, L, S)` layout on both sides. Every drawn mask leaves each query
at least one key: the frameworks disagree on fully masked rows (torch 0, JAX a uniform average).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..layout import permute
from ..registry import Case, Tensor, register

HEADS_LAST = permute(0, 2, 1, 3)


# Draws are module-level functions, their options bound by `functools.partial`, so that a
# case's inputs pickle (as in crosscheck/draw.py).


def _keep_mask(p_masked, rng, shape):
    """Bool draws (True = take part) with a random key kept in every row of the last axis."""
    keep = rng.uniform(size=shape) >= p_masked
    forced = rng.integers(0, shape[-1], shape[:-1])
    return keep | (np.arange(shape[-1]) == forced[..., None])


def _inf_mask(p_masked, rng, shape):
    """Additive float masks: standard normal, with `-inf` where a `_keep_mask` drops the key."""
    return np.where(_keep_mask(p_masked, rng, shape), rng.standard_normal(shape), -np.inf)


def _drop_keep(p, rng, shape):
    """Dropout's keep masks (True keeps), each element kept with `1 - p`."""
    return rng.random(shape) >= p


def dropout_input(p, shape):
    """The keep mask as a keyword input, as both modules take it (`module(..., dropout_mask=m)`)."""
    return Tensor("dropout_mask", shape, kind="bool", differentiable=False, draw=functools.partial(_drop_keep, p),
                  keyword=True)


# -- scaled dot-product attention ------------------------------------------------------------


def _sdpa_module(dtype, *, scale, is_causal):
    from jax_layers.attention import DotProductAttention

    return DotProductAttention(scale=scale, is_causal=is_causal)


def _sdpa_call(module, q, k, v, m=None, *, dropout_mask=None, additive: bool, dropout_rate: float):
    """`module` (a `DotProductAttention`) called with torch's single `attn_mask` slot: a bool
    mask, or (`additive`) a float bias; with a `dropout_rate`, dropout through
    flax.nnx.dot_product_attention's counterpart, which the module lacks."""
    bias, mask = (m, None) if additive else (None, m)
    if not dropout_rate:
        return module(q, k, v, bias, mask)
    from jax_layers.attention import nnx_attention_fn

    return nnx_attention_fn(q, k, v, bias, mask, dropout_rate=dropout_rate, is_causal=module.is_causal,
                            dropout_mask=dropout_mask)


# The case's functions are module-level, their options bound by `functools.partial` in
# `_sdpa_case`: they then pickle by reference, which closures do not.


def _split(rest, *, kind, has_keep):
    """`(attn_mask, keep)` from the inputs after q, k, v."""
    m = rest[0] if kind else None
    return m, (rest[-1] if has_keep else None)


def _sdpa_torch(q, k, v, *rest, kind, has_keep, p, is_causal, scale):
    from torch_layers.attention import scaled_dot_product_attention

    m, keep = _split(rest, kind=kind, has_keep=has_keep)
    return scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=p, is_causal=is_causal, scale=scale,
                                        dropout_mask=keep)


def _sdpa_torch_ref(q, k, v, *rest, kind, has_keep, p, is_causal, scale):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m, keep = _split(rest, kind=kind, has_keep=has_keep)
    if keep is None:
        # The math kernel: the fused CPU one has no vmap batching rule (and warns).
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=is_causal, scale=scale)
    # The built-in draws its own dropout mask: the same math from standard ops instead.
    s = torch.matmul(q, k.mT) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if m is not None:
        s = s.masked_fill(~m, -math.inf) if kind == "bool" else s + m
    if is_causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), -math.inf)
    return torch.matmul(torch.softmax(s, -1) * keep.to(s.dtype) / (1 - p), v)


def _sdpa_jax(q, k, v, *rest, kind, has_keep, p, is_causal, scale):
    from jax_layers.attention import dot_product_attention, nnx_attention_fn

    m, keep = _split(rest, kind=kind, has_keep=has_keep)
    bias, bool_mask = (None, m) if kind == "bool" else (m, None)
    if keep is None:
        return dot_product_attention(q, k, v, bias, bool_mask, scale=scale, is_causal=is_causal)
    # flax.nnx.dot_product_attention's counterpart: jax.nn's has no dropout.
    return nnx_attention_fn(q, k, v, bias, bool_mask, dropout_rate=p, is_causal=is_causal, dropout_mask=keep)


def _sdpa_jax_ref(q, k, v, *rest, kind, has_keep, p, is_causal, scale):
    import jax
    import jax.numpy as jnp

    m, keep = _split(rest, kind=kind, has_keep=has_keep)
    s = jnp.einsum("btnh,bsnh->bnts", q, k) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if m is not None:
        s = jnp.where(m, s, -jnp.inf) if kind == "bool" else s + m
    if is_causal:
        s = jnp.where(jnp.tril(jnp.ones(s.shape[-2:], bool)), s, -jnp.inf)
    w = jax.nn.softmax(s, axis=-1)
    if keep is not None:
        w = jnp.where(keep, w / (1 - p), 0)
    return jnp.einsum("bnts,bsnh->btnh", w, v)


def _sdpa_torch_module(dtype, device, *, p, is_causal, scale):
    from torch_layers.attention import ScaledDotProductAttention

    return ScaledDotProductAttention(is_causal=is_causal, scale=scale, dropout_p=p)


def _sdpa_inputs(q_shape, s_len, kind, mask_shape, dropout):
    """q, k, v in torch's layout, then the `attn_mask` of `kind` and the dropout keep mask
    where the case has them: the order the functions unpack (`_split`)."""
    n, h, L, e = q_shape
    qkv = (("query", L), ("key", s_len), ("value", s_len))
    inputs = [Tensor(x, (n, h, length, e), layout=HEADS_LAST) for x, length in qkv]
    if kind == "bool":
        keep = functools.partial(_keep_mask, 0.4)
        inputs.append(Tensor("attn_mask", mask_shape, kind="bool", differentiable=False, draw=keep))
    elif kind == "float":
        inputs.append(Tensor("attn_mask", mask_shape))
    elif kind == "float-inf":
        inputs.append(Tensor("attn_mask", mask_shape, differentiable=False, draw=functools.partial(_inf_mask, 0.4)))
    if dropout:
        inputs.append(dropout_input(*dropout))
    return tuple(inputs)


def _sdpa_case(name, q_shape, s_len, mask=None, is_causal=False, scale=None, dropout=None, description=""):
    """`mask`: None, "bool", "float" (differentiable) or "float-inf", with its shape; `dropout`:
    None or `(p, keep mask shape)`, the keep mask an input drawn here for both sides."""
    kind, mask_shape = mask or (None, None)
    p = dropout[0] if dropout else 0.0
    options = dict(kind=kind, has_keep=bool(dropout), p=p, is_causal=is_causal, scale=scale)
    return Case(
        name=name,
        family="attention",
        inputs=_sdpa_inputs(q_shape, s_len, kind, mask_shape, dropout),
        torch_fn=functools.partial(_sdpa_torch, **options),
        torch_ref=functools.partial(_sdpa_torch_ref, **options),
        jax_fn=functools.partial(_sdpa_jax, **options),
        jax_ref=functools.partial(_sdpa_jax_ref, **options),
        torch_module=functools.partial(_sdpa_torch_module, p=p, is_causal=is_causal, scale=scale),
        jax_module=functools.partial(_sdpa_module, scale=scale, is_causal=is_causal),
        jax_call=functools.partial(_sdpa_call, additive=kind != "bool", dropout_rate=p),
        out_layouts=(HEADS_LAST,),
        description=description,
    )


def _redrawn(mask_shape, declared, drawn):
    """`mask_shape`, which broadcasts against `declared`, for `drawn`: its broadcast dims stay 1."""
    k = len(mask_shape)
    return tuple(d if m == full else 1 for m, full, d in zip(mask_shape, declared[-k:], drawn[-k:]))


def _sdpa_bucket(name, q_shape, s_len, mask, dropout, options, n, heads, q_len, k_len, head_dim):
    """The case of `_sdpa` at one bucket's sizes, its masks redrawn to match."""
    declared, drawn = (*q_shape[:3], s_len), (n, heads, q_len, k_len)
    m = mask and (mask[0], _redrawn(mask[1], declared, drawn))
    d = dropout and (dropout[0], _redrawn(dropout[1], declared, drawn))
    about = f"q {(n, heads, q_len, head_dim)}, k/v {(n, heads, k_len, head_dim)}"
    about += f", {m[0]} mask {m[1]}" if m else ""
    about += f", dropout p={d[0]}, keep mask {d[1]}" if d else ""
    about += "".join(f", {k}={v}" for k, v in options.items())
    return _sdpa_case(name, (n, heads, q_len, head_dim), k_len, mask=m, dropout=d, description=about, **options)


def _sdpa(name, q_shape, s_len, mask=None, dropout=None, description="", **options):
    """The case at its declared shapes; buckets draw batch, heads, query and key lengths and head
    dim independently, and the masks (of the declared rank and broadcast dims) to match."""
    build = functools.partial(_sdpa_bucket, name, q_shape, s_len, mask, dropout, options)
    ranges = dict(n=range(1, 3), heads=range(1, 4), q_len=range(1, 6), k_len=range(1, 7), head_dim=range(1, 6))
    case = _sdpa_case(name, q_shape, s_len, mask=mask, dropout=dropout, description=description, **options)
    register(case, build, ranges)


# L != S and E != L everywhere; a size-1 dim in each, where a missing broadcast sum would hide.
SDPA = "scaled_dot_product_attention"
_sdpa(SDPA, (1, 3, 4, 5), 6, description="q (1, 3, 4, 5), k/v (1, 3, 6, 5), no mask")
_sdpa(
    f"{SDPA}-bool-mask", (2, 3, 4, 5), 6, mask=("bool", (2, 1, 4, 6)),
    description="bool mask (2, 1, 4, 6), True = take part",
)
_sdpa(
    f"{SDPA}-float-mask", (2, 3, 4, 5), 6, mask=("float", (1, 3, 4, 6)),
    description="additive float mask (1, 3, 4, 6), differentiable",
)
_sdpa(
    f"{SDPA}-float-mask-inf", (2, 2, 4, 3), 5, mask=("float-inf", (4, 5)),
    description="additive float mask (4, 5) with -inf entries, not differentiable",
)
_sdpa(f"{SDPA}-causal", (2, 3, 4, 5), 6, is_causal=True, description="is_causal, L=4 < S=6 (top-left)")
_sdpa(
    f"{SDPA}-causal-scale", (1, 2, 6, 4), 3, is_causal=True, scale=0.3,
    description="is_causal, L=6 > S=3, scale=0.3",
)
_sdpa(f"{SDPA}-one-query", (2, 3, 1, 5), 6, description="a single query, L=1")
# p = 0.25: a scale of 4/3 is inexact in binary, so a wrong or missing scale shows.
_sdpa(
    f"{SDPA}-dropout", (2, 3, 4, 5), 6, mask=("float", (1, 3, 4, 6)), dropout=(0.25, (2, 3, 4, 6)),
    description="dropout p=0.25, keep mask (2, 3, 4, 6) drawn for both sides; additive float mask (1, 3, 4, 6)",
)
# One keep mask shared over batch and heads, as flax.nnx's broadcast_dropout draws it.
_sdpa(
    f"{SDPA}-dropout-causal", (2, 2, 5, 3), 4, is_causal=True, dropout=(0.6, (1, 1, 5, 4)),
    description="dropout p=0.6, keep mask (1, 1, 5, 4) shared over batch and heads; is_causal, L=5 > S=4",
)
