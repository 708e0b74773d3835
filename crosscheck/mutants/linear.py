"""Planted bugs in Linear's backward."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward


def _torch(backward):
    from torch_layers.linear import LinearFunction

    cls = torch_with_backward(LinearFunction, backward)
    return lambda x, w, b=None: cls.apply(x, w, b)


def _jax(bwd):
    L = importlib.import_module("jax_layers.linear")

    f = jax_with_bwd(L._linear, L._fwd, bwd, nondiff_argnums=(0,))
    return lambda x, k, b=None: f(L.DEFAULT, x, k, b)


def weight_grad_transposed():
    def backward(ctx, g):
        gi, gw, gb = _base(ctx, g)
        return gi, gw.mT, gb

    return _torch(backward)


def _base(ctx, g):
    from torch_layers.linear import LinearFunction

    return LinearFunction.backward(ctx, g)


def bias_grad_not_summed():
    def backward(ctx, g):
        gi, gw, _ = _base(ctx, g)
        # Forgets to sum over the batch: (..., out) instead of (out,). Autograd sums it
        # silently; only the raw backward contract sees it.
        return gi, gw, g.clone()

    return _torch(backward)


def backward_raises():
    def backward(ctx, g):
        raise RuntimeError("planted: backward not implemented")

    return _torch(backward)


def jax_input_grad_sign():
    L = importlib.import_module("jax_layers.linear")

    def bwd(ops, res, g):
        gx, gk, gb = L._bwd(ops, res, g)
        return -gx, gk, gb

    return _jax(bwd)


def jax_kernel_grad_from_wrong_input():
    import jax.numpy as jnp

    L = importlib.import_module("jax_layers.linear")

    def bwd(ops, res, g):
        x, kernel, bias = res
        gx, _, gb = L._bwd(ops, res, g)
        # The kernel gradient built from the cotangent alone: right shape, wrong values.
        g2 = g.reshape(-1, kernel.shape[1])
        return gx, jnp.ones((kernel.shape[0], g2.shape[0]), g.dtype) @ g2, gb

    return _jax(bwd)


def input_grad_doubled():
    def backward(ctx, g):
        gi, gw, gb = _base(ctx, g)
        return None if gi is None else 2 * gi, gw, gb  # a factor of 2 from a misread `d(x^2)` rule

    return _torch(backward)


def input_grad_last_row_dropped():
    def backward(ctx, g):
        gi, gw, gb = _base(ctx, g)
        # An off-by-one loop bound: the last batch row never gets its gradient.
        return None if gi is None else gi.index_fill(0, torch_arange_last(gi), 0.0), gw, gb

    return _torch(backward)


def bias_grad_only_with_weight():
    def backward(ctx, g):
        from torch_layers.linear import LinearFunction

        full = LinearFunction.backward(ctx, g)
        # The bias gradient computed inside the weight branch: lost when only bias needs it.
        return full[0], full[1], full[2] if ctx.needs_input_grad[1] else None

    return _torch(backward)


def backward_not_differentiable():
    def backward(ctx, g):
        input, weight = ctx.saved_tensors
        # Right first-order values, but detached: double backward loses the x-W cross term.
        gi = torch_matmul(g.detach(), weight.detach())
        gw = torch_matmul(g.reshape(-1, weight.shape[0]).detach().mT, input.reshape(-1, weight.shape[1]).detach())
        return gi, gw, g.reshape(-1, weight.shape[0]).sum(0)

    return _torch(backward)


def torch_matmul(a, b):
    import torch

    return torch.matmul(a, b)


def torch_arange_last(t):
    import torch

    return torch.tensor([t.shape[0] - 1], device=t.device)


def jax_kernel_grad_zero():
    import jax.numpy as jnp

    L = importlib.import_module("jax_layers.linear")

    def bwd(ops, res, g):
        gx, gk, gb = L._bwd(ops, res, g)
        return gx, jnp.zeros_like(gk), gb  # a stub left in place

    return _jax(bwd)


def jax_input_grad_nan():
    import jax.numpy as jnp

    L = importlib.import_module("jax_layers.linear")

    def bwd(ops, res, g):
        x = res[0]
        gx, gk, gb = L._bwd(ops, res, g)
        # sqrt(x)^2 / x "simplified" wrongly: NaN wherever the input is negative.
        return gx * jnp.sqrt(x) ** 2 / x, gk, gb

    return _jax(bwd)


for _name, _side, _make, _expect, _desc in [
    ("weight-grad-transposed", "torch", weight_grad_transposed, ("grad", "grad-contract", "grad-autodiff", "finite-diff"),
     "weight gradient returned as (in, out)"),
    ("bias-grad-not-summed", "torch", bias_grad_not_summed, ("grad-contract",),
     "bias gradient not summed over the batch"),
    ("backward-raises", "torch", backward_raises, ("grad", "grad-contract", "grad-autodiff", "finite-diff"),
     "backward raises"),
    ("input-grad-sign", "jax", jax_input_grad_sign, ("grad", "grad-autodiff", "finite-diff"),
     "input gradient with the wrong sign"),
    ("kernel-grad-wrong-input", "jax", jax_kernel_grad_from_wrong_input, ("grad", "grad-autodiff", "finite-diff"),
     "kernel gradient computed without the input"),
    ("bias-grad-only-with-weight", "torch", bias_grad_only_with_weight, ("grad-contract",),
     "bias gradient skipped unless the weight needs a gradient too"),
    ("backward-detached", "torch", backward_not_differentiable, ("hvp", "hvp-autodiff"),
     "backward detaches its inputs: first order right, double backward wrong"),
    ("input-grad-doubled", "torch", input_grad_doubled, ("grad", "grad-autodiff", "finite-diff"),
     "input gradient twice too large"),
    ("input-grad-last-row-dropped", "torch", input_grad_last_row_dropped, ("grad", "grad-autodiff", "finite-diff"),
     "input gradient of the last batch row left at zero"),
    ("kernel-grad-zero", "jax", jax_kernel_grad_zero, ("grad", "grad-autodiff", "finite-diff"),
     "kernel gradient left at zero"),
    ("input-grad-nan", "jax", jax_input_grad_nan, ("grad", "grad-autodiff", "finite-diff"),
     "input gradient NaN where the input is negative"),
]:
    register_mutant(Mutant(f"linear/{_name}", "linear", _side, _make(), _expect, _desc))


def input_grad_via_view():
    def backward(ctx, g):
        from torch_layers.linear import LinearFunction

        gi, gw, gb = LinearFunction.backward(ctx, g)
        input, weight = ctx.saved_tensors
        # `.view` on a saved input assumes contiguity: it raises for a strided input.
        gw = g.reshape(-1, weight.shape[0]).mT @ input.view(-1, weight.shape[1])
        return gi, gw, gb

    return _torch(backward)


register_mutant(
    Mutant("linear/weight-grad-view-of-input", "linear-strided", "torch", input_grad_via_view(),
           ("grad", "grad-contract", "grad-autodiff", "finite-diff"),
           "weight gradient reads the input through `.view`, which strided inputs reject")
)
