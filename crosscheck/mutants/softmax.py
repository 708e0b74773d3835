"""Planted bugs in softmax's and log-softmax's backward passes."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _S():
    return importlib.import_module("jax_layers.softmax")


def _torch(function_name, backward, dim):
    cls = torch_with_backward(getattr(importlib.import_module("torch_layers.softmax"), function_name), backward)
    return lambda x: cls.apply(x, dim)


def _jax(primal, fwd, bwd, axes, *mask):
    """`primal` with `bwd`; softmax's primal also takes a `where` mask (`mask`: `(None,)`)."""
    f = jax_with_bwd(primal, fwd, bwd, nondiff_argnums=(0,))
    return lambda x: f(axes, x, *mask)


def softmax_missing_sum_term_torch():
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return y * g, None  # the diagonal of the Jacobian only: - y sum(g y) dropped

    return _torch("SoftmaxFunction", backward, -1)


def softmax_missing_sum_term_jax():
    S = _S()

    def bwd(axes, res, g):
        y, _ = res
        return y * g, None

    return _jax(S._softmax, S._softmax_fwd, bwd, (1,), None)


def softmax_sum_over_last_axis():
    import jax.numpy as jnp

    S = _S()

    def bwd(axes, res, g):
        y, _ = res
        return y * (g - jnp.sum(g * y, -1, keepdims=True)), None  # the last axis, not `axes`

    return _jax(S._softmax, S._softmax_fwd, bwd, (1,), None)


def log_softmax_weights_with_y():
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g - y * g.sum(ctx.dim, keepdim=True), None  # y where exp(y) belongs

    return _torch("LogSoftmaxFunction", backward, -1)


def log_softmax_softmax_formula():
    import jax.numpy as jnp

    S = _S()

    def bwd(axes, y, g):
        p = jnp.exp(y)
        return (g - p * jnp.sum(g * p, axes, keepdims=True),)  # softmax's sum(g y) term reused

    return _jax(S._log_softmax, S._log_softmax_fwd, bwd, (0,))


for _name, _case, _side, _make, _desc in [
    ("softmax/missing-sum-term", "softmax", "torch", softmax_missing_sum_term_torch,
     "softmax backward y g, without the - y sum(g y) term"),
    ("softmax-dim1/missing-sum-term", "softmax-dim1", "jax", softmax_missing_sum_term_jax,
     "softmax backward y g, without the - y sum(g y) term"),
    ("softmax-dim1/sum-over-last-axis", "softmax-dim1", "jax", softmax_sum_over_last_axis,
     "softmax backward sums over the last axis instead of the softmax axis"),
    ("log_softmax/weights-with-y", "log_softmax", "torch", log_softmax_weights_with_y,
     "log-softmax backward g - y sum(g), y in place of exp(y)"),
    ("log_softmax-dim0/softmax-formula", "log_softmax-dim0", "jax", log_softmax_softmax_formula,
     "log-softmax backward with softmax's sum(g p) instead of sum(g)"),
]:
    register_mutant(Mutant(_name, _case, _side, _make(), VALUES, _desc))
