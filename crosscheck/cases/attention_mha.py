"""Cases for multi-head attention: torch.nn.MultiheadAttention (batch first) <-> flax.nnx's.

Options: a key padding mask, dropout (its keep mask drawn here for both sides), key and value
inputs of their own sizes (`kdim`, `vdim`: nnx's `in_kv_features`), and torch's appended key
and value rows (`add_bias_kv`, `add_zero_attn`), which flax.nnx lacks: the NNX side of those
runs `jax_layers.attention.multi_head_attention` on the parameters of the library's module
(`_rows_call`).
"""

from __future__ import annotations

import functools
import math

from ..convert.attention import mha_param_map
from ..draw import normal
from ..layout import TRANSPOSE
from ..registry import Case, Tensor, register
from ._mha_reference import jax_reference, torch_reference
from .attention import _keep_mask, dropout_input


def _jax_module(dtype, *, heads, embed_dim, kdim, vdim, dropout, bias_kv):
    """`jax_layers.attention.MultiHeadAttention`, with what flax.nnx's module lacks set on it:
    where `vdim` is not `kdim`, the value projection of one built for values of size `vdim`;
    with `bias_kv`, `bias_k`/`bias_v (heads, head_dim)` for torch's appended rows (`_rows_call`
    reads them)."""
    import jax.numpy as jnp
    from flax import nnx

    from jax_layers.attention import MultiHeadAttention

    common = dict(dropout_rate=dropout, decode=False, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0))
    module = MultiHeadAttention(heads, embed_dim, in_kv_features=kdim, deterministic=False, **common)
    if vdim != kdim:
        module.value = MultiHeadAttention(heads, embed_dim, in_kv_features=vdim, **common).value
    if bias_kv:
        module.bias_k = nnx.Param(jnp.zeros((heads, module.head_dim), dtype))
        module.bias_v = nnx.Param(jnp.zeros((heads, module.head_dim), dtype))
    return module


def _keeps(kpm):
    """torch's key padding mask `(N, S)` (True = ignore) as nnx's bool mask (True = take part)."""
    return None if kpm is None else ~kpm[:, None, None, :]


def _padded_call(module, q, k, v, kpm=None, *, dropout_mask=None):
    """`module` called as `(q, k, v[, key_padding_mask])`, as torch's module is."""
    return module(q, k, v, mask=_keeps(kpm), dropout_mask=dropout_mask)


def _rows_call(module, q, k, v, kpm=None, *, dropout_mask=None, add_bias_kv: bool, add_zero_attn: bool):
    """`_padded_call`, with keys and values of their own sizes and torch's appended rows
    (`add_bias_kv`, `add_zero_attn`): `multi_head_attention` on the module's parameters."""
    from jax_layers.attention import multi_head_attention

    projections = (module.query, module.key, module.value, module.out)
    rows = {"bias_k": module.bias_k[...], "bias_v": module.bias_v[...]} if add_bias_kv else {}
    return multi_head_attention(
        q, k, v, *(m.kernel[...] for m in projections), *(m.bias[...] for m in projections), mask=_keeps(kpm),
        add_zero_attn=add_zero_attn, dropout_rate=module.dropout_rate, dropout_mask=dropout_mask, **rows,
    )


# The case's functions are module-level, their options bound by `functools.partial` in
# `_mha_case`: they then pickle by reference, which closures do not. They take
# `(*inputs, *params)` and find each by its tensor name (`names`), as the inputs and
# parameters a case has depend on its options.


def _mha_torch(*args, names, E, H, dropout, zero_attn, packed):
    from torch_layers.attention import multi_head_attention_forward

    a = dict(zip(names, args))
    q, k, v = (a[x].transpose(0, 1) for x in ("query", "key", "value"))
    out, _ = multi_head_attention_forward(
        q, k, v, E, H, a.get("in_proj_weight"), a["in_proj_bias"], a.get("bias_k"), a.get("bias_v"), zero_attn,
        dropout, a["out_proj.weight"], a["out_proj.bias"], key_padding_mask=a.get("key_padding_mask"),
        need_weights=False, use_separate_proj_weight=not packed, q_proj_weight=a.get("q_proj_weight"),
        k_proj_weight=a.get("k_proj_weight"), v_proj_weight=a.get("v_proj_weight"), dropout_mask=a.get("dropout_mask"),
    )
    return out.transpose(0, 1)


def _mha_torch_ref(*args, names, E, H, dropout, zero_attn, packed):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    a = dict(zip(names, args))
    if dropout:
        return torch_reference(a, E, H, dropout, zero_attn)
    q, k, v = (a[x].transpose(0, 1) for x in ("query", "key", "value"))
    with sdpa_kernel(SDPBackend.MATH):  # as in the SDPA cases
        out, _ = F.multi_head_attention_forward(
            q, k, v, E, H, a.get("in_proj_weight"), a["in_proj_bias"], a.get("bias_k"), a.get("bias_v"), zero_attn,
            0.0, a["out_proj.weight"], a["out_proj.bias"], key_padding_mask=a.get("key_padding_mask"),
            need_weights=False, use_separate_proj_weight=not packed, q_proj_weight=a.get("q_proj_weight"),
            k_proj_weight=a.get("k_proj_weight"), v_proj_weight=a.get("v_proj_weight"),
        )
    return out.transpose(0, 1)


def _mha_jax(*args, names, E, H, dropout, zero_attn, packed):
    import jax.numpy as jnp

    from jax_layers.attention import multi_head_attention

    a = dict(zip(names, args))
    ws = jnp.split(a["in_proj_weight"], 3, axis=1) if packed else [a[f"{x}_proj_weight"] for x in "qkv"]
    kernels = [w.reshape(w.shape[0], H, E // H) for w in ws]
    biases = [b.reshape(H, E // H) for b in jnp.split(a["in_proj_bias"], 3)]
    kpm = a.get("key_padding_mask")
    rows = {k: a[k].reshape(H, E // H) for k in ("bias_k", "bias_v") if k in a}
    return multi_head_attention(
        a["query"], a["key"], a["value"], *kernels, a["out_proj.weight"].reshape(H, E // H, E), *biases,
        a["out_proj.bias"], mask=None if kpm is None else ~kpm[:, None, None, :], add_zero_attn=zero_attn,
        dropout_rate=dropout, dropout_mask=a.get("dropout_mask"), **rows,
    )


def _mha_jax_ref(*args, names, E, H, dropout, zero_attn):
    return jax_reference(dict(zip(names, args)), E, H, dropout, zero_attn)


class _BatchFirst:
    """Mixed into torch_layers' MultiheadAttention by `_mha_torch_module` (there, so that
    importing the cases imports no torch): calls as `(q, k, v[, key_padding_mask])` and
    returns the output only."""

    def forward(self, q, k, v, kpm=None, *, dropout_mask=None):
        return super().forward(q, k, v, key_padding_mask=kpm, need_weights=False, dropout_mask=dropout_mask)[0]


def _mha_torch_module(dtype, device, *, E, H, dropout, bias_kv, zero_attn, kdim, vdim):
    from torch_layers.attention import MultiheadAttention

    BatchFirst = type("BatchFirst", (_BatchFirst, MultiheadAttention), {})
    return BatchFirst(E, H, dropout=dropout, add_bias_kv=bias_kv, add_zero_attn=zero_attn, kdim=kdim, vdim=vdim,
                      batch_first=True, dtype=dtype, device=device)


def _padding_mask(p_masked, rng, shape):
    """torch's key padding mask (True = ignore): an inverted `_keep_mask`, one key kept per row."""
    return ~_keep_mask(p_masked, rng, shape)


def _mha_inputs(n, L, s_len, E, H, kdim, vdim, padding, dropout, extra):
    """Queries, keys and values, then the key padding mask and the dropout keep mask only
    where the case has them: the functions find each input by its name (`names`)."""
    inputs = [Tensor("query", (n, L, E)), Tensor("key", (n, s_len, kdim)), Tensor("value", (n, s_len, vdim))]
    if padding:
        pad = functools.partial(_padding_mask, 0.4)
        inputs.append(Tensor("key_padding_mask", (n, s_len), kind="bool", differentiable=False, draw=pad))
    if dropout:
        inputs.append(dropout_input(dropout, (n, H, L, s_len + extra)))
    return tuple(inputs)


def _mha_params(E, kdim, vdim, packed, bias_kv):
    """torch's parameters: one packed `in_proj_weight`, or one projection weight each where the
    keys or values have sizes of their own."""
    # Weights of scale 0.4 keep the logits O(1): peaked softmaxes would only measure conditioning.
    if packed:
        params = [Tensor("in_proj_weight", (3 * E, E), layout=TRANSPOSE, draw=normal(0.4))]
    else:
        sizes = zip("qkv", (E, kdim, vdim))
        params = [Tensor(f"{x}_proj_weight", (E, d), layout=TRANSPOSE, draw=normal(0.4)) for x, d in sizes]
    params += [
        Tensor("in_proj_bias", (3 * E,), draw=normal(0.4)),
        Tensor("out_proj.weight", (E, E), layout=TRANSPOSE, draw=normal(0.4)),
        Tensor("out_proj.bias", (E,)),
    ]
    if bias_kv:
        params += [Tensor("bias_k", (1, 1, E), draw=normal(0.4)), Tensor("bias_v", (1, 1, E))]
    return tuple(params)


def _mha_case(name, n, L, s_len, embed_dim, num_heads, padding=False, dropout=0.0, kdim=None, vdim=None,
              bias_kv=False, zero_attn=False, description=""):
    """Batch-first `(N, L, E)` queries and `(N, S, kdim)`, `(N, S, vdim)` keys and values; with
    `padding`, a `key_padding_mask (N, S)` (True = ignore); with `dropout`, a keep mask
    `(N, heads, L, S')`, `S'` counting the appended rows."""
    E, H = embed_dim, num_heads
    kdim, vdim = kdim or E, vdim or E
    packed = kdim == vdim == E
    inputs = _mha_inputs(n, L, s_len, E, H, kdim, vdim, padding, dropout, extra=bias_kv + zero_attn)
    params = _mha_params(E, kdim, vdim, packed, bias_kv)
    names = tuple(t.name for t in (*inputs, *params))
    shared = dict(names=names, E=E, H=H, dropout=dropout, zero_attn=zero_attn)
    return Case(
        name=name,
        family="attention",
        inputs=inputs,
        params=params,
        torch_fn=functools.partial(_mha_torch, **shared, packed=packed),
        torch_ref=functools.partial(_mha_torch_ref, **shared, packed=packed),
        jax_fn=functools.partial(_mha_jax, **shared, packed=packed),
        jax_ref=functools.partial(_mha_jax_ref, **shared),
        torch_module=functools.partial(_mha_torch_module, E=E, H=H, dropout=dropout, bias_kv=bias_kv,
                                       zero_attn=zero_attn, kdim=kdim, vdim=vdim),
        jax_module=functools.partial(_jax_module, heads=H, embed_dim=E, kdim=kdim, vdim=vdim, dropout=dropout,
                                     bias_kv=bias_kv),
        jax_call=(functools.partial(_rows_call, add_bias_kv=bias_kv, add_zero_attn=zero_attn)
                  if bias_kv or zero_attn or kdim != vdim else _padded_call),
        param_map=mha_param_map(H),
        description=description,
    )


# (heads, head dim) for the buckets, all but embed_dim 1: it leaves out_proj.weight a single
# element and in_proj_bias three, one of whose gradients (the key bias's, zero by the softmax's
# shift invariance) is pure rounding noise; the bfloat16 checks of one draw failed 1 draw in 40
# to 110 there, against 1 in 120 to 300 at other sizes (the declared ones included).
HEADS = tuple((heads, head_dim) for heads in range(1, 4) for head_dim in range(1, 4) if heads * head_dim > 1)


def _mha_bucket(name, kv_dims, options, n, q_len, k_len, heads_dim, kdim=None, vdim=None):
    """The case of `_mha` at one bucket's sizes (`options` without `kdim` and `vdim`)."""
    heads, E = heads_dim[0], math.prod(heads_dim)
    vdim = kdim if kv_dims == "same" else vdim
    if kv_dims and kdim == vdim == E:
        # torch would pack the three weights into in_proj_weight: other parameters.
        kdim = E + 1
        vdim = kdim if kv_dims == "same" else vdim
    about = f"batch_first q {(n, q_len, E)}, k {(n, k_len, kdim or E)}, v {(n, k_len, vdim or E)}, heads={heads}"
    about += "".join(f", {k}={v}" for k, v in options.items())
    return _mha_case(name, n, q_len, k_len, E, heads, kdim=kdim, vdim=vdim, description=about, **options)


def _mha(name, n, L, s_len, embed_dim, num_heads, description="", kv_dims=None, **options):
    """The case at its declared shapes; buckets draw batch, query and key lengths, HEADS
    (embed_dim = heads x head dim) and, with `kv_dims`, the key and value sizes independently
    ("same": one size for both, as flax.nnx's `in_kv_features`)."""
    ranges = dict(n=range(1, 4), q_len=range(1, 5), k_len=range(1, 6), heads_dim=HEADS)
    if kv_dims:
        ranges.update(kdim=range(1, 6), **({} if kv_dims == "same" else {"vdim": range(1, 6)}))
    kw = {k: options.pop(k) for k in ("kdim", "vdim") if k in options}
    case = _mha_case(name, n, L, s_len, embed_dim, num_heads, description=description, **kw, **options)
    register(case, functools.partial(_mha_bucket, name, kv_dims, options), ranges)


_mha(
    "multihead-attention", 1, 4, 5, 6, 2,
    description="batch_first q (1, 4, 6), k/v (1, 5, 6), E=6, 2 heads",
)
_mha(
    "multihead-attention-padding", 3, 2, 5, 6, 3, padding=True,
    description="key_padding_mask (3, 5), E=6, 3 heads of dim 2",
)
# p = 0.25: a scale of 4/3 is inexact in binary, so a wrong or missing scale shows.
_mha(
    "multihead-attention-dropout", 2, 4, 3, 6, 2, dropout=0.25, padding=True,
    description="dropout p=0.25, keep mask (2, 2, 4, 3) drawn for both sides; key_padding_mask (2, 3)",
)
# kdim = vdim != E: flax.nnx's in_kv_features; torch keeps three projection weights.
_mha(
    "multihead-attention-kdim", 2, 3, 5, 6, 3, kdim=4, vdim=4, kv_dims="same",
    description="kdim = vdim = 4, E=6: q_proj_weight (6, 6), k/v_proj_weight (6, 4)",
)
# Everything flax.nnx's module lacks: kdim != vdim, and the appended bias and zero rows.
_mha(
    "multihead-attention-bias-kv", 2, 3, 4, 6, 2, kdim=3, vdim=5, kv_dims="own", bias_kv=True, zero_attn=True,
    padding=True,
    description="add_bias_kv, add_zero_attn, kdim=3, vdim=5, E=6, key_padding_mask (2, 4)",
)
