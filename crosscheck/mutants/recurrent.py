"""Planted bugs in the LSTM and GRU cells' backward passes."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

CAUGHT_BY_VALUES = ("grad", "grad-autodiff", "finite-diff")


def _swap_first_blocks(cat, split, a, n):
    """`a`'s gate blocks with the first two exchanged: (i, f, ...) -> (f, i, ...)."""
    blocks = list(split(a, n))
    return cat([blocks[1], blocks[0], *blocks[2:]])


# -- torch ------------------------------------------------------------------------------------


def _torch_lstm(dgates, reorder=None):
    """LSTMCellFunction whose backward uses `dgates(i, f, g, o, c, c_new, gh, gc) -> (da, dc')`."""
    import torch

    from torch_layers.recurrent import LSTMCellFunction, _lstm_gates, _param_grads

    def backward(ctx, grad_h, grad_c):
        x, h, c, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        i, f, g, o = _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
        da, dc_new = dgates(i, f, g, o, c, f * c + i * g, grad_h, grad_c)
        if reorder is not None:
            da = reorder(da)
        return (torch.matmul(da, w_ih), torch.matmul(da, w_hh), dc_new * f, *_param_grads(ctx, da, da, x, h, w_ih, w_hh, first=3))

    cls = torch_with_backward(LSTMCellFunction, backward)
    return lambda x, h, c, w_ih, w_hh, b_ih=None, b_hh=None: cls.apply(x, h, c, w_ih, w_hh, b_ih, b_hh)


def _right_dgates(i, f, g, o, c, c_new, gh, gc):
    import torch

    from torch_layers.recurrent import _lstm_dgates

    return _lstm_dgates(i, f, g, o, c, torch.tanh(c_new), gh, gc)


def torch_lstm_forget_grad_new_cell():
    import torch

    from torch_layers.recurrent import _lstm_dgates

    def dgates(i, f, g, o, c, c_new, gh, gc):
        # d(f c)/df taken at the updated cell state c' instead of the incoming c.
        return _lstm_dgates(i, f, g, o, c_new, torch.tanh(c_new), gh, gc)

    return _torch_lstm(dgates)


def torch_lstm_gate_order_swapped():
    import torch

    def reorder(da):
        return _swap_first_blocks(lambda b: torch.cat(b, -1), lambda a, n: a.chunk(n, -1), da, 4)

    return _torch_lstm(_right_dgates, reorder=reorder)


def _torch_gru(post):
    """GRUCellFunction with its gradients passed through `post(grads, ctx, g, z, d_ih) -> grads`."""
    import torch

    from torch_layers.recurrent import GRUCellFunction, _gru_gates

    def backward(ctx, g):
        x, h, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        r, z, n, hn = _gru_gates(x, h, w_ih, w_hh, b_ih, b_hh)
        da_n = g * (1 - z) * (1 - n * n)
        d_ih = torch.cat([da_n * hn * r * (1 - r), g * (h - n) * z * (1 - z), da_n], dim=-1)
        return tuple(post(list(GRUCellFunction.backward(ctx, g)), g, z, d_ih))

    cls = torch_with_backward(GRUCellFunction, backward)
    return lambda x, h, w_ih, w_hh, b_ih=None, b_hh=None: cls.apply(x, h, w_ih, w_hh, b_ih, b_hh)


def torch_gru_bhn_grad_outside_r():
    def post(grads, g, z, d_ih):
        # b_hh summed like b_ih, as if b_hn were added outside r * (W_hn h + b_hn).
        if grads[5] is not None:
            grads[5] = d_ih.reshape(-1, d_ih.shape[-1]).sum(0)
        return grads

    return _torch_gru(post)


def torch_gru_dh_missing_recurrent():
    def post(grads, g, z, d_ih):
        if grads[1] is not None:
            grads[1] = g * z  # only the direct z h path; the path through W_hh is dropped
        return grads

    return _torch_gru(post)


# -- jax --------------------------------------------------------------------------------------


def _jax_lstm(bwd):
    R = importlib.import_module("jax_layers.recurrent")
    f = jax_with_bwd(R._lstm, R._lstm_fwd, bwd)
    return lambda x, h, c, w_ih, w_hh, b_ih=None, b_hh=None: f(x, h, c, w_ih, w_hh, b_ih, b_hh)


def _jax_gru(bwd):
    R = importlib.import_module("jax_layers.recurrent")
    f = jax_with_bwd(R._gru, R._gru_fwd, bwd)
    return lambda x, h, w_ih, w_hh, b_ih=None, b_hh=None: f(x, h, w_ih, w_hh, b_ih, b_hh)


def jax_lstm_forget_grad_new_cell():
    import jax.numpy as jnp

    R = importlib.import_module("jax_layers.recurrent")

    def bwd(res, cts):
        x, h, c, w_ih, w_hh, b_ih, b_hh, i, f, g, o, tc = res
        # d(f c)/df taken at the updated cell state c' instead of the incoming c.
        da, dc_new = R._lstm_dgates(i, f, g, o, f * c + i * g, tc, *cts)
        grads = R._param_grads(da, da, x, h, w_ih, w_hh, b_ih, b_hh)
        return (jnp.matmul(da, w_ih.T), jnp.matmul(da, w_hh.T), dc_new * f, *grads)

    return _jax_lstm(bwd)


def jax_lstm_dh_missing_recurrent():
    import jax.numpy as jnp

    R = importlib.import_module("jax_layers.recurrent")

    def bwd(res, cts):
        gx, gh, *rest = R._lstm_bwd(res, cts)
        return (gx, jnp.zeros_like(gh), *rest)  # h reaches the gates only through W_hh; dropped

    return _jax_lstm(bwd)


def jax_gru_bhn_grad_outside_r():
    R = importlib.import_module("jax_layers.recurrent")

    def bwd(res, g):
        gx, gh, gw_ih, gw_hh, gb_ih, gb_hh = R._gru_bwd(res, g)
        return gx, gh, gw_ih, gw_hh, gb_ih, gb_ih  # b_hn's factor r forgotten

    return _jax_gru(bwd)


def jax_gru_gate_order_swapped():
    import jax.numpy as jnp

    R = importlib.import_module("jax_layers.recurrent")

    def bwd(res, g):
        x, h, w_ih, w_hh, b_ih, b_hh, r, z, n, hn = res
        da_n = g * (1 - z) * (1 - n * n)
        da_r = da_n * hn * r * (1 - r)
        da_z = g * (h - n) * z * (1 - z)
        # Blocks laid out as (z, r, n), against the forward's (r, z, n).
        d_ih = jnp.concatenate([da_z, da_r, da_n], axis=-1)
        d_hh = jnp.concatenate([da_z, da_r, da_n * r], axis=-1)
        grads = R._param_grads(d_ih, d_hh, x, h, w_ih, w_hh, b_ih, b_hh)
        return (jnp.matmul(d_ih, w_ih.T), g * z + jnp.matmul(d_hh, w_hh.T), *grads)

    return _jax_gru(bwd)


for _name, _case, _side, _make, _desc in [
    ("lstm-forget-grad-new-cell", "lstm_cell", "torch", torch_lstm_forget_grad_new_cell,
     "forget-gate gradient uses c' instead of c"),
    ("lstm-gate-order-swapped", "lstm_cell", "torch", torch_lstm_gate_order_swapped,
     "gate gradient blocks assembled as (f, i, g, o)"),
    ("gru-bhn-grad-outside-r", "gru_cell", "torch", torch_gru_bhn_grad_outside_r,
     "b_hh gradient copied from b_ih's: the r in r * (W_hn h + b_hn) is missed"),
    ("gru-dh-missing-recurrent", "gru_cell", "torch", torch_gru_dh_missing_recurrent,
     "hx gradient lacks the path through weight_hh"),
    ("jax-lstm-forget-grad-new-cell", "lstm_cell", "jax", jax_lstm_forget_grad_new_cell,
     "forget-gate gradient uses c' instead of c"),
    ("jax-lstm-dh-missing-recurrent", "lstm_cell", "jax", jax_lstm_dh_missing_recurrent,
     "h gradient lacks the path through w_hh (returned as zeros)"),
    ("jax-gru-bhn-grad-outside-r", "gru_cell", "jax", jax_gru_bhn_grad_outside_r,
     "b_hh gradient copied from b_ih's: the r in r * (h W_hn + b_hn) is missed"),
    ("jax-gru-gate-order-swapped", "gru_cell", "jax", jax_gru_gate_order_swapped,
     "gate gradient blocks laid out as (z, r, n)"),
]:
    register_mutant(Mutant(f"recurrent/{_name}", _case, _side, _make(), CAUGHT_BY_VALUES, _desc))
