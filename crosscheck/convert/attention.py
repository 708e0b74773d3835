"""torch.nn.MultiheadAttention <-> flax.nnx.MultiHeadAttention.

torch packs the query, key and value projections into `in_proj_weight (3E, E)` (rows in that
order) and `in_proj_bias (3E,)`; nnx keeps one `LinearGeneral` each, `kernel (E, heads,
head_dim)` and `bias (heads, head_dim)`, and `out.kernel (heads, head_dim, E)`. Keys and values
of other sizes (torch's `kdim`/`vdim`, nnx's `in_kv_features`) have a weight each in torch,
`q_proj_weight (E, E)`, `k_proj_weight (E, kdim)`, `v_proj_weight (E, vdim)`. torch's
`add_bias_kv` rows `bias_k`/`bias_v (1, 1, E)`, which flax.nnx lacks, map to `bias_k`/`bias_v
(heads, head_dim)` where the nnx module has them.
"""

from __future__ import annotations

import functools

import numpy as np

from ._core import ParamMap, register_param_map

_PROJECTIONS = ("query", "key", "value")
_SEPARATE = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
_ROWS = ("bias_k", "bias_v")


def _mha_to_nnx(state, *, num_heads):
    out = {}
    if "in_proj_weight" in state:
        w = np.asarray(state["in_proj_weight"])
        for name, wi in zip(_PROJECTIONS, np.split(w, 3)):
            out[f"{name}.kernel"] = wi.T.reshape(wi.shape[1], num_heads, -1)
    for name, key in zip(_PROJECTIONS, _SEPARATE):
        if key in state:
            wi = np.asarray(state[key])
            out[f"{name}.kernel"] = wi.T.reshape(wi.shape[1], num_heads, -1)
    for key in _ROWS:
        if key in state:
            out[key] = np.asarray(state[key]).reshape(num_heads, -1)
    if "in_proj_bias" in state:
        for name, bi in zip(_PROJECTIONS, np.split(np.asarray(state["in_proj_bias"]), 3)):
            out[f"{name}.bias"] = bi.reshape(num_heads, -1)
    if "out_proj.weight" in state:
        w = np.asarray(state["out_proj.weight"])
        out["out.kernel"] = w.T.reshape(num_heads, -1, w.shape[0])
    if "out_proj.bias" in state:
        out["out.bias"] = np.asarray(state["out_proj.bias"])
    return out


def _mha_to_torch(params):
    out = {}
    if all(f"{n}.kernel" in params for n in _PROJECTIONS):
        weights = [np.asarray(params[f"{n}.kernel"]) for n in _PROJECTIONS]
        weights = [k.reshape(k.shape[0], -1).T for k in weights]
        # torch packs them exactly where every input has the query's size.
        if all(w.shape == weights[0].shape for w in weights) and weights[0].shape[0] == weights[0].shape[1]:
            out["in_proj_weight"] = np.concatenate(weights)
        else:
            out.update(zip(_SEPARATE, weights))
    if all(f"{n}.bias" in params for n in _PROJECTIONS):
        out["in_proj_bias"] = np.concatenate([np.asarray(params[f"{n}.bias"]).reshape(-1) for n in _PROJECTIONS])
    if "out.kernel" in params:
        k = np.asarray(params["out.kernel"])
        out["out_proj.weight"] = k.reshape(-1, k.shape[-1]).T
    if "out.bias" in params:
        out["out_proj.bias"] = np.asarray(params["out.bias"])
    for key in _ROWS:
        if key in params:
            out[key] = np.asarray(params[key]).reshape(1, 1, -1)
    return out


def mha_param_map(num_heads: int) -> ParamMap:
    """The map for a module with `num_heads` heads (needed to split `E` into heads)."""
    return ParamMap(functools.partial(_mha_to_nnx, num_heads=num_heads), _mha_to_torch)


@register_param_map("MultiheadAttention")
def multihead_attention(module):
    return mha_param_map(module.num_heads)
