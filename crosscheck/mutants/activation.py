"""Planted bugs in the activations' backward passes."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _A():
    return importlib.import_module("jax_layers.activation")


def sigmoid_derivative_missing_factor():
    from torch_layers.activation import SigmoidFunction

    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y  # forgets the (1 - y) factor

    cls = torch_with_backward(SigmoidFunction, backward)
    return lambda x: cls.apply(x)


def sigmoid_derivative_from_input():
    A = _A()

    def fwd(x):
        return A._sigmoid(x), (x,)

    def bwd(res, g):
        (x,) = res
        return (g * x * (1 - x),)  # y (1 - y) evaluated at x instead of y

    return jax_with_bwd(A._sigmoid, fwd, bwd)


def tanh_derivative_not_squared():
    import jax.numpy as jnp

    A = _A()

    def bwd(res, g):
        (y,) = res
        return (g * (1 - y),)  # 1 - y instead of 1 - y^2

    return jax_with_bwd(jnp.tanh, A._tanh_fwd, bwd)


def relu_grad_not_masked():
    from torch_layers.activation import ReLUFunction

    def backward(ctx, g):
        return g.clone()  # the identity's gradient: negatives leak through

    cls = torch_with_backward(ReLUFunction, backward)
    return lambda x: cls.apply(x)


def leaky_relu_slope_on_wrong_side():
    import jax.numpy as jnp

    A = _A()

    def bwd(slope, res, g):
        (x,) = res
        return (jnp.where(x > 0, slope * g, g),)

    f = jax_with_bwd(A._leaky_relu, A._leaky_relu_fwd, bwd, nondiff_argnums=(0,))
    return lambda x: f(0.3, x)


def elu_derivative_missing_alpha():
    import torch

    from torch_layers.activation import ELUFunction

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        # d/dx alpha (exp(x) - 1) written as exp(x): right only for alpha = 1.
        return torch.where(x > 0, g, g * torch.exp(torch.clamp(x, max=0))), None

    cls = torch_with_backward(ELUFunction, backward)
    return lambda x: cls.apply(x, 0.7)


def gelu_derivative_is_cdf():
    import torch

    from torch_layers.activation import GELUFunction

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 0.5 * (1 + torch.erf(x * 0.5**0.5)), None  # Phi(x), forgetting x phi(x)

    cls = torch_with_backward(GELUFunction, backward)
    return lambda x: cls.apply(x, "none")


def gelu_tanh_inner_derivative_missing_cubic():
    import jax.numpy as jnp

    A = _A()

    def bwd(approximate, res, g):
        (x,) = res
        t = jnp.tanh(A._SQRT_2_OVER_PI * (x + A._GELU_CUBIC * x * x * x))
        # d/dx of k (x + c x^3) taken as k: the 3 c x^2 term dropped.
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * A._SQRT_2_OVER_PI),)

    f = jax_with_bwd(A._gelu, A._gelu_fwd, bwd, nondiff_argnums=(0,))
    return lambda x: f(True, x)


def silu_derivative_is_sigmoid():
    A = _A()

    def bwd(res, g):
        (x,) = res
        return (g * A._sigmoid(x),)  # the product rule's x sigmoid'(x) term dropped

    return jax_with_bwd(A._silu, A._silu_fwd, bwd)


def softplus_ignores_threshold():
    import torch

    from torch_layers.activation import SoftplusFunction

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x * ctx.beta), None, None  # slope 1 past the threshold forgotten

    cls = torch_with_backward(SoftplusFunction, backward)
    return lambda x: cls.apply(x, 2.0, 3.0)


def softplus_sigmoid_without_beta():
    import jax.numpy as jnp

    A = _A()

    def bwd(beta, threshold, res, g):
        (x,) = res
        return (jnp.where(beta * x > threshold, g, g * A._sigmoid(x)),)  # sigmoid(x), not sigmoid(beta x)

    f = jax_with_bwd(A._softplus, A._softplus_fwd, bwd, nondiff_argnums=(0, 1))
    return lambda x: f(2.0, 3.0, x)


for _name, _case, _side, _make, _desc in [
    ("sigmoid/derivative-missing-factor", "sigmoid", "torch", sigmoid_derivative_missing_factor,
     "sigmoid derivative y instead of y (1 - y)"),
    ("sigmoid/derivative-from-input", "sigmoid", "jax", sigmoid_derivative_from_input,
     "sigmoid derivative evaluated at the input, not the output"),
    ("tanh/derivative-not-squared", "tanh", "jax", tanh_derivative_not_squared, "tanh derivative 1 - y, not 1 - y^2"),
    ("relu/grad-not-masked", "relu", "torch", relu_grad_not_masked, "relu gradient passes through negative inputs"),
    ("leaky_relu-slope/slope-on-wrong-side", "leaky_relu-slope", "jax", leaky_relu_slope_on_wrong_side,
     "negative slope applied to the positive side"),
    ("elu-alpha/derivative-missing-alpha", "elu-alpha", "torch", elu_derivative_missing_alpha,
     "elu derivative exp(x) instead of alpha exp(x)"),
    ("gelu/derivative-is-cdf", "gelu", "torch", gelu_derivative_is_cdf, "gelu derivative Phi(x), the x phi(x) term dropped"),
    ("gelu-tanh/inner-derivative-missing-cubic", "gelu-tanh", "jax", gelu_tanh_inner_derivative_missing_cubic,
     "tanh-gelu chain rule without the 3 c x^2 term"),
    ("silu/derivative-is-sigmoid", "silu", "jax", silu_derivative_is_sigmoid,
     "silu derivative sigmoid(x), the product rule half-done"),
    ("softplus-beta/ignores-threshold", "softplus-beta", "torch", softplus_ignores_threshold,
     "softplus slope sigmoid(beta x) also past the linear switch"),
    ("softplus-beta/sigmoid-without-beta", "softplus-beta", "jax", softplus_sigmoid_without_beta,
     "softplus slope sigmoid(x) instead of sigmoid(beta x)"),
]:
    register_mutant(Mutant(_name, _case, _side, _make(), VALUES, _desc))
