"""The multi-head attention cases' references: the same math from each framework's standard
ops, batch first, for what the built-in modules cannot take (a keep mask drawn for both sides,
torch's appended key and value rows with kdim != vdim). `a` maps a case's tensor names to their
values."""

from __future__ import annotations

import math


def torch_reference(a, E, H, p, zero_attn):
    """torch's standard ops."""
    import torch
    import torch.nn.functional as F

    n, L, hd = a["query"].shape[0], a["query"].shape[1], E // H
    ws = a["in_proj_weight"].chunk(3) if "in_proj_weight" in a else [a[f"{x}_proj_weight"] for x in "qkv"]
    q, k, v = (F.linear(a[x], w, b) for x, w, b in zip(("query", "key", "value"), ws, a["in_proj_bias"].chunk(3)))
    rows = ([(a["bias_k"], a["bias_v"])] if "bias_k" in a else []) + ([(None, None)] if zero_attn else [])
    for rk, rv in rows:
        k, v = (torch.cat([x, torch.zeros_like(x[:, :1]) if r is None else r.reshape(1, 1, E).expand(n, 1, E)], 1)
                for x, r in ((k, rk), (v, rv)))
    q, k, v = (x.reshape(n, x.shape[1], H, hd).transpose(1, 2) for x in (q, k, v))
    s = torch.matmul(q, k.mT) / math.sqrt(hd)
    if "key_padding_mask" in a:
        s = s.masked_fill(F.pad(a["key_padding_mask"], (0, len(rows)))[:, None, None, :], -math.inf)
    w = torch.softmax(s, -1)
    if "dropout_mask" in a:
        w = w * a["dropout_mask"].to(w.dtype) / (1 - p)
    o = torch.matmul(w, v).transpose(1, 2).reshape(n, L, E)
    return F.linear(o, a["out_proj.weight"], a["out_proj.bias"])


def jax_reference(a, E, H, p, zero_attn):
    """jax.numpy's."""
    import jax
    import jax.numpy as jnp

    hd = E // H
    ws = jnp.split(a["in_proj_weight"], 3, axis=1) if "in_proj_weight" in a else [a[f"{x}_proj_weight"] for x in "qkv"]
    q, k, v = (a[x] @ w + b for x, w, b in zip(("query", "key", "value"), ws, jnp.split(a["in_proj_bias"], 3)))
    rows = ([(a["bias_k"], a["bias_v"])] if "bias_k" in a else []) + ([(None, None)] if zero_attn else [])
    for rk, rv in rows:
        k, v = (jnp.concatenate([x, jnp.zeros_like(x[:, :1]) if r is None else jnp.broadcast_to(r.reshape(1, 1, E), x[:, :1].shape)], 1)
                for x, r in ((k, rk), (v, rv)))
    q, k, v = (x.reshape(*x.shape[:-1], H, hd) for x in (q, k, v))
    s = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd)
    if "key_padding_mask" in a:
        kpm = jnp.pad(a["key_padding_mask"], [(0, 0), (0, len(rows))])
        s = jnp.where(~kpm[:, None, None, :], s, -jnp.inf)
    w = jax.nn.softmax(s, axis=-1)
    if "dropout_mask" in a:
        w = jnp.where(a["dropout_mask"], w / (1 - p), 0)
    o = jnp.einsum("bhts,bshd->bthd", w, v)
    return o.reshape(*o.shape[:-2], E) @ a["out_proj.weight"] + a["out_proj.bias"]
