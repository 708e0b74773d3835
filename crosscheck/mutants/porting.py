"""Consistent porting errors: forward and backward wrong together.

A port that copies a wrong constant into both the forward and its derivative is internally
consistent, so `gradcheck`, `check_grads` and finite differences all pass; only the
cross-framework forward and the independent reference forward can catch it.
"""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant

WRONG_CUBIC = 0.0447  # torch and the GELU paper use 0.044715


def gelu_tanh_wrong_constant():
    """jax: GELU's tanh approximation with a truncated cubic constant, in fwd and bwd alike."""
    import jax.numpy as jnp

    act = importlib.import_module("jax_layers.activation")
    c = act._SQRT_2_OVER_PI

    def f(x):
        return 0.5 * x * (1 + jnp.tanh(c * (x + WRONG_CUBIC * x**3)))

    def fwd(x):
        return f(x), (x,)

    def bwd(res, g):
        (x,) = res
        t = jnp.tanh(c * (x + WRONG_CUBIC * x**3))
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * WRONG_CUBIC * x * x)),)

    return jax_with_bwd(f, fwd, bwd)


def linear_bias_subtracted():
    """torch: `x W^T - b` (a sign slip while porting), with the matching bias gradient `-g`."""
    import torch

    lin = importlib.import_module("torch_layers.linear")

    class Wrong(lin.LinearFunction):
        @staticmethod
        def forward(input, weight, bias):
            return torch.matmul(input, weight.mT) - bias

        @staticmethod
        def backward(ctx, g):
            gi, gw, gb = lin.LinearFunction.backward(ctx, g)
            return gi, gw, None if gb is None else -gb

    return lambda x, w, b=None: Wrong.apply(x, w, b)


_FORWARD = ("forward", "forward-reference")
register_mutant(Mutant("gelu-tanh/cubic-constant-both-ways", "gelu-tanh", "jax", gelu_tanh_wrong_constant(), _FORWARD,
                       "tanh-GELU cubic constant 0.0447 in forward and backward alike (gradcheck passes)"))
register_mutant(Mutant("linear/bias-subtracted-both-ways", "linear", "torch", linear_bias_subtracted(), _FORWARD,
                       "bias subtracted in the forward, with the matching gradient (gradcheck passes)"))
