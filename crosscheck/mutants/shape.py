"""Planted bugs in the shape layers' backward passes."""

from __future__ import annotations

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

SHAPE = (4, -1, 1)  # the registered "reshape" case


def reshape_grad_not_reshaped():
    from torch_layers.shape import ReshapeFunction

    def backward(ctx, g):
        return g, None  # the output's shape, not the input's

    cls = torch_with_backward(ReshapeFunction, backward)
    return lambda x: cls.apply(x, SHAPE)


def reshape_grad_transposed():
    import jax.numpy as jnp

    from jax_layers import shape as S

    def bwd(in_shape, shape, res, g):
        # Right shape, wrong order: the gradient read out in reversed axis order.
        return (jnp.reshape(jnp.transpose(g), in_shape[::-1]).T,)

    f = jax_with_bwd(S._reshape, S._reshape_fwd, bwd, nondiff_argnums=(0, 1))
    return lambda x: f(tuple(x.shape), SHAPE, x)


register_mutant(
    Mutant("reshape/grad-not-reshaped", "reshape", "torch", reshape_grad_not_reshaped(),
           ("grad", "grad-contract", "grad-autodiff", "finite-diff"), "gradient left in the output's shape")
)
register_mutant(
    Mutant("reshape/grad-transposed", "reshape", "jax", reshape_grad_transposed(),
           ("grad", "grad-autodiff", "finite-diff"), "gradient elements in the wrong order")
)
