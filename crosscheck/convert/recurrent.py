"""torch.nn.LSTMCell / GRUCell <-> flax.nnx.LSTMCell / GRUCell.

torch stacks the gate blocks along the rows of `weight_ih (G*H, in)` and `weight_hh (G*H, H)`;
Flax keeps `(in, H)`/`(H, H)` kernels per gate (LSTM: `ii, if_, ig, io`, `hi, hf, hg, ho`) or
fused `(in, G*H)`/`(H, G*H)` ones (GRU: `dense_i`, `dense_h`). The gate order agrees (i, f,
g, o and r, z, n); the biases do not:

- LSTM: torch adds `b_ih + b_hh`, Flax has one bias per gate on the `h*` layers. torch ->
  Flax sums them; Flax -> torch puts the bias in `bias_hh` and zeros in `bias_ih`.
- GRU: Flax has `dense_i.bias` only. `b_hr` and `b_hz` fold into it, but `b_hn` sits inside
  `r * (W_hn h + b_hn)`, which Flax's cell cannot express: torch -> Flax requires `b_hn = 0`
  and raises otherwise. Our `jax_layers.GRUCell(use_recurrent_bias=True)` keeps `b_hh` as
  `dense_h.bias`; `gru_map(..., recurrent_bias=True)` maps that one-to-one.

Summing two biases into one is not a permutation, so the map that carries weights back
(`to_torch`, a right inverse) and the one that carries gradients back (`grads_to_torch`, the
adjoint: both torch biases get the gradient of their sum) differ.
"""

from __future__ import annotations

import functools

import numpy as np

from ._core import ParamMap, register_param_map

LSTM_INPUT = ("ii", "if_", "ig", "io")
LSTM_HIDDEN = ("hi", "hf", "hg", "ho")


def _no_bias_lost(b: np.ndarray, where: str) -> None:
    if np.any(b != 0):
        raise ValueError(f"`{where}` (={b}) is nonzero but the torch module has bias=False")


def _lstm_to_nnx(state):
    w_ih, w_hh = np.asarray(state["weight_ih"]), np.asarray(state["weight_hh"])
    b = sum((np.asarray(state[k]) for k in ("bias_ih", "bias_hh") if k in state), np.zeros(w_hh.shape[0]))
    out = {}
    for k, (gi, gh) in enumerate(zip(LSTM_INPUT, LSTM_HIDDEN)):
        i_rows, h_rows, b_rows = np.split(w_ih, 4)[k], np.split(w_hh, 4)[k], np.split(b, 4)[k]
        out.update({f"{gi}.kernel": i_rows.T, f"{gh}.kernel": h_rows.T, f"{gh}.bias": b_rows})
    return out


def _lstm_to_torch(params, *, bias, grads=False):
    out = {
        "weight_ih": np.concatenate([np.asarray(params[f"{g}.kernel"]).T for g in LSTM_INPUT]),
        "weight_hh": np.concatenate([np.asarray(params[f"{g}.kernel"]).T for g in LSTM_HIDDEN]),
    }
    b = np.concatenate([np.asarray(params[f"{g}.bias"]) for g in LSTM_HIDDEN])
    if bias:
        out.update(bias_ih=b if grads else np.zeros_like(b), bias_hh=b)
    elif not grads:
        _no_bias_lost(b, "h*.bias")
    return out


def _gru_to_nnx(state, *, recurrent_bias):
    w_ih, w_hh = np.asarray(state["weight_ih"]), np.asarray(state["weight_hh"])
    zeros = np.zeros(w_ih.shape[0])
    b_ih, b_hh = (np.asarray(state[k]) if k in state else zeros for k in ("bias_ih", "bias_hh"))
    out = {"dense_i.kernel": w_ih.T, "dense_h.kernel": w_hh.T}
    if recurrent_bias:
        return {**out, "dense_i.bias": b_ih, "dense_h.bias": b_hh}
    hr, hz, hn = np.split(b_hh, 3)
    if np.any(hn != 0):
        raise ValueError(
            f"`bias_hh` n block (={hn}) must be zero: flax.nnx.GRUCell has no b_hn inside r * (W_hn h + b_hn)"
        )
    return {**out, "dense_i.bias": b_ih + np.concatenate([hr, hz, hn])}


def _gru_to_torch(params, *, bias, recurrent_bias, grads=False):
    if grads and bias and not recurrent_bias:
        raise ValueError("gradients need `recurrent_bias` (=False): flax.nnx.GRUCell has no b_hn to take a gradient of")
    out = {"weight_ih": np.asarray(params["dense_i.kernel"]).T, "weight_hh": np.asarray(params["dense_h.kernel"]).T}
    b_ih = np.asarray(params["dense_i.bias"])
    b_hh = np.asarray(params["dense_h.bias"]) if "dense_h.bias" in params else np.zeros_like(b_ih)
    if bias:
        out.update(bias_ih=b_ih, bias_hh=b_hh)
    elif not grads:
        _no_bias_lost(b_ih, "dense_i.bias")
        _no_bias_lost(b_hh, "dense_h.bias")
    return out


def lstm_map(bias: bool = True) -> ParamMap:
    """torch.nn.LSTMCell's `state_dict` <-> flax.nnx.LSTMCell's params.

    Args:
        bias: whether the torch module has `bias_ih`/`bias_hh`.
    """
    to_torch = functools.partial(_lstm_to_torch, bias=bias)
    return ParamMap(_lstm_to_nnx, to_torch, functools.partial(to_torch, grads=True))


def gru_map(bias: bool = True, *, recurrent_bias: bool = False) -> ParamMap:
    """torch.nn.GRUCell's `state_dict` <-> flax.nnx.GRUCell's params.

    Args:
        bias: whether the torch module has `bias_ih`/`bias_hh`.
        recurrent_bias: the nnx module has `dense_h.bias` (`jax_layers.GRUCell(use_recurrent_bias=True)`),
            so the biases map one-to-one. Without it, gradients cannot go back to torch's
            biases: flax.nnx.GRUCell has no b_hn to take a gradient of.
    """
    to_torch = functools.partial(_gru_to_torch, bias=bias, recurrent_bias=recurrent_bias)
    return ParamMap(functools.partial(_gru_to_nnx, recurrent_bias=recurrent_bias), to_torch,
                    functools.partial(to_torch, grads=True))


@register_param_map("LSTMCell")
def lstm_cell(module):
    return lstm_map(module.bias_ih is not None)


@register_param_map("GRUCell")
def gru_cell(module, nnx_module=None):
    # An nnx cell that holds `dense_h.bias` (ours, `use_recurrent_bias=True`) takes torch's
    # `bias_hh` as it is; flax.nnx.GRUCell has none and takes it folded into `dense_i.bias`.
    dense_h = getattr(nnx_module, "dense_h", None)
    return gru_map(module.bias_ih is not None, recurrent_bias=getattr(dense_h, "bias", None) is not None)
