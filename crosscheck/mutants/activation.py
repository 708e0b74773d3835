"""Planted bugs in the activations' backward passes."""

from __future__ import annotations

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward


def sigmoid_derivative_missing_factor():
    from torch_layers.activation import SigmoidFunction

    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y  # forgets the (1 - y) factor

    cls = torch_with_backward(SigmoidFunction, backward)
    return lambda x: cls.apply(x)


def sigmoid_derivative_from_input():
    from jax_layers import activation as A

    def fwd(x):
        return A._sigmoid(x), (x,)

    def bwd(res, g):
        (x,) = res
        return (g * x * (1 - x),)  # y (1 - y) evaluated at x instead of y

    return jax_with_bwd(A._sigmoid, fwd, bwd)


register_mutant(
    Mutant("sigmoid/derivative-missing-factor", "sigmoid", "torch", sigmoid_derivative_missing_factor(),
           ("grad", "grad-autodiff", "finite-diff"), "sigmoid derivative y instead of y (1 - y)")
)
register_mutant(
    Mutant("sigmoid/derivative-from-input", "sigmoid", "jax", sigmoid_derivative_from_input(),
           ("grad", "grad-autodiff", "finite-diff"), "sigmoid derivative evaluated at the input, not the output")
)
