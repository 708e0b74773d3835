"""Planted bugs in multi-head attention's own backward code: the appended key/value rows and the
key/value projections of other sizes than the query's."""

from __future__ import annotations

import importlib
from unittest import mock

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _case_fn(case, side):
    """The registered case's own function of `side`, looked up when first called."""
    from ..registry import get

    return getattr(get(case), f"{side}_fn")


def _patched(case, side, module, name, replacement):
    """The case's function run with `module.name` replaced: the bug sits below the case's
    function, in a piece of the layer that the function reaches by that name."""

    def fn(*args):
        with mock.patch.object(importlib.import_module(module), name, replacement):
            return _case_fn(case, side)(*args)

    return fn


def torch_bias_row_grad_one_sample():
    K = importlib.import_module("torch_layers._kv")

    def backward(ctx, g):
        # The appended row's gradient from the first batch element only, not summed over the batch.
        grad_row = None if ctx.row_shape is None else g[-1, 0].reshape(ctx.row_shape)
        return g[:-1], grad_row

    cls = torch_with_backward(K.AppendRowFunction, backward)
    return _patched("multihead-attention-bias-kv", "torch", "torch_layers._multihead", "append_row",
                    lambda x, row, name: cls.apply(x, row))


def jax_rows_grad_shifted():
    K = importlib.import_module("jax_layers._kv")

    def bwd(res, g):
        _, grad_row = K._append_bwd(res, g)
        return g[..., 1:, :, :], grad_row  # the keys' gradient from rows 1..S, off by one

    f = jax_with_bwd(K._append, K._append_fwd, bwd)
    return _patched("multihead-attention-bias-kv", "jax", "jax_layers._multihead", "append_row",
                    lambda x, row, name: f(x, row))


def torch_kv_weight_grad_reshaped():
    import torch

    L = importlib.import_module("torch_layers.linear")

    def backward(ctx, g):
        x, w = ctx.saved_tensors
        grad_x, grad_w, grad_b = L.LinearFunction.backward(ctx, g)
        if w.shape[0] != w.shape[1]:  # the key and value projections, of kdim/vdim inputs
            # x^T g reshaped to the weight's shape instead of transposed: right shape, wrong values.
            grad_w = torch.matmul(x.reshape(-1, w.shape[1]).mT, g.reshape(-1, w.shape[0])).reshape(w.shape)
        return grad_x, grad_w, grad_b

    cls = torch_with_backward(L.LinearFunction, backward)
    return _patched("multihead-attention-kdim", "torch", "torch_layers._multihead", "linear",
                    lambda x, w, b=None: cls.apply(x, w, b))


def jax_kv_input_grad_from_query_kernel():
    import jax.numpy as jnp

    L = importlib.import_module("jax_layers.linear")

    def bwd(ops, res, g):
        x, kernel, bias = res
        grad_x, grad_kernel, grad_bias = L._bwd(ops, res, g)
        if kernel.shape[0] != kernel.shape[1]:  # the key and value projections, of in_kv inputs
            # The input gradient through a kernel read in the query's square layout.
            k = jnp.reshape(kernel.T, kernel.shape)
            grad_x = (g.astype(k.dtype) @ k.T).astype(x.dtype)
        return grad_x, grad_kernel, grad_bias

    f = jax_with_bwd(L._linear, L._fwd, bwd, nondiff_argnums=(0,))
    return _patched("multihead-attention-kdim", "jax", "jax_layers._multihead", "linear",
                    lambda x, kernel, bias=None: f(L.DEFAULT, x, kernel, bias))


for _name, _case, _side, _make, _desc in [
    ("bias-row-grad-one-sample", "multihead-attention-bias-kv", "torch", torch_bias_row_grad_one_sample,
     "bias_k / bias_v gradient from the first batch element only, not summed over the batch"),
    ("rows-grad-shifted-jax", "multihead-attention-bias-kv", "jax", jax_rows_grad_shifted,
     "keys' and values' gradient read one row late past the appended rows"),
    ("kv-weight-grad-reshaped", "multihead-attention-kdim", "torch", torch_kv_weight_grad_reshaped,
     "k/v_proj_weight gradient x^T g reshaped to (E, kdim) instead of transposed"),
    ("kv-input-grad-reshaped-kernel-jax", "multihead-attention-kdim", "jax", jax_kv_input_grad_from_query_kernel,
     "key/value input gradient through the kernel transposed and reshaped, not the kernel itself"),
]:
    register_mutant(Mutant(f"attention/{_name}", _case, _side, _make(), VALUES, _desc))
