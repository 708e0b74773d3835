"""Planted bugs in the shape layers' backward passes."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

SHAPE = (4, -1, 1)  # the registered "reshape" case
VALUES = ("grad", "grad-autodiff", "finite-diff")


def _S():
    return importlib.import_module("jax_layers.shape")


def reshape_grad_not_reshaped():
    from torch_layers.shape import ReshapeFunction

    def backward(ctx, g):
        return g, None  # the output's shape, not the input's

    cls = torch_with_backward(ReshapeFunction, backward)
    return lambda x: cls.apply(x, SHAPE)


def reshape_grad_transposed():
    import jax.numpy as jnp

    S = _S()

    def bwd(in_shape, shape, res, g):
        # Right shape, wrong order: the gradient read out in reversed axis order.
        return (jnp.reshape(jnp.transpose(g), in_shape[::-1]).T,)

    f = jax_with_bwd(S._reshape, S._reshape_fwd, bwd, nondiff_argnums=(0, 1))
    return lambda x: f(tuple(x.shape), SHAPE, x)


def flatten_grad_not_reshaped():
    from torch_layers.shape import FlattenFunction

    def backward(ctx, g):
        return g, None, None  # left flat: the output's shape

    cls = torch_with_backward(FlattenFunction, backward)
    return lambda x: cls.apply(x, 1, x.ndim - 1)


def flatten_grad_column_major():
    import jax.numpy as jnp

    S = _S()

    def bwd(in_shape, start, end, res, g):
        # Unflattened in Fortran order: right shape, elements scattered to the wrong places.
        return (jnp.reshape(g, in_shape, order="F"),)

    f = jax_with_bwd(S._flatten, S._flatten_fwd, bwd, nondiff_argnums=(0, 1, 2))
    return lambda x: f(tuple(x.shape), 1, 2, x)


def permute_grad_by_dims_not_inverse():
    import torch

    from torch_layers.shape import PermuteFunction

    def backward(ctx, g):
        # Permuting back by `dims` itself: right only when `dims` is its own inverse.
        dims = tuple(sorted(range(len(ctx.inverse)), key=ctx.inverse.__getitem__))
        return torch.permute(g, dims), None

    cls = torch_with_backward(PermuteFunction, backward)
    return lambda x: cls.apply(x, (2, 0, 3, 1))


def permute_grad_reshaped():
    import jax.numpy as jnp

    S = _S()

    def bwd(dims, res, g):
        shape = [0] * len(dims)
        for out_axis, in_axis in enumerate(dims):
            shape[in_axis] = g.shape[out_axis]
        return (jnp.reshape(g, shape),)  # right shape, but the axes were never moved back

    f = jax_with_bwd(S._permute, S._permute_fwd, bwd, nondiff_argnums=(0,))
    return lambda x: f((2, 0, 1), x)


for _name, _case, _side, _make, _expect, _desc in [
    ("reshape/grad-not-reshaped", "reshape", "torch", reshape_grad_not_reshaped, ("grad-contract", *VALUES),
     "gradient left in the output's shape"),
    ("reshape/grad-transposed", "reshape", "jax", reshape_grad_transposed, VALUES, "gradient elements in the wrong order"),
    ("flatten/grad-not-reshaped", "flatten", "torch", flatten_grad_not_reshaped, ("grad-contract", *VALUES),
     "gradient left flat, in the output's shape"),
    ("flatten-middle/grad-column-major", "flatten-middle", "jax", flatten_grad_column_major, VALUES,
     "gradient unflattened in column-major order"),
    ("permute/grad-by-dims-not-inverse", "permute", "torch", permute_grad_by_dims_not_inverse,
     ("grad-contract", *VALUES), "gradient permuted by dims instead of their inverse"),
    ("permute-negative/grad-reshaped", "permute-negative", "jax", permute_grad_reshaped, VALUES,
     "gradient reshaped to the input's shape instead of permuted back"),
]:
    register_mutant(Mutant(_name, _case, _side, _make(), _expect, _desc))
