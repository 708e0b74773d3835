"""Cases for shape layers."""

from __future__ import annotations

from ..registry import Case, Tensor, register


def _reshape_case(name, in_shape, shape):
    def torch_fn(x):
        import torch_layers

        return torch_layers.reshape(x, shape)

    def torch_ref(x):
        import torch

        return torch.reshape(x, shape)

    def jax_fn(x):
        import jax_layers

        return jax_layers.reshape(x, shape)

    def jax_ref(x):
        import jax.numpy as jnp

        return jnp.reshape(x, shape)

    def torch_module(dtype, device):
        import torch_layers

        return torch_layers.Reshape(*shape)

    def jax_module(dtype):
        import jax_layers

        return jax_layers.Reshape(*shape)

    return Case(
        name=name,
        family="shape",
        inputs=(Tensor("input", in_shape),),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        description=f"{in_shape} -> {shape}",
    )


register(_reshape_case("reshape", (2, 3, 4), (4, -1, 1)))


def _flatten_case(name, in_shape, start_dim, end_dim):
    def torch_fn(x):
        from torch_layers.shape import flatten

        return flatten(x, start_dim, end_dim)

    def torch_ref(x):
        import torch

        return torch.flatten(x, start_dim, end_dim)

    def jax_fn(x):
        from jax_layers.shape import flatten

        return flatten(x, start_dim, end_dim)

    def jax_ref(x):
        import math

        import jax.numpy as jnp

        start, end = start_dim % x.ndim, end_dim % x.ndim
        shape = x.shape
        return jnp.reshape(x, (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :]))

    def torch_module(dtype, device):
        from torch_layers.shape import Flatten

        return Flatten(start_dim, end_dim)

    def jax_module(dtype):
        from jax_layers.shape import Flatten

        return Flatten(start_dim, end_dim)

    return Case(
        name=name,
        family="shape",
        inputs=(Tensor("input", in_shape),),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        description=f"{in_shape}, start_dim={start_dim}, end_dim={end_dim}",
    )


def _permute_case(name, in_shape, dims):
    def torch_fn(x):
        from torch_layers.shape import permute

        return permute(x, dims)

    def torch_ref(x):
        import torch

        return torch.permute(x, dims)

    def jax_fn(x):
        from jax_layers.shape import permute

        return permute(x, dims)

    def jax_ref(x):
        import jax.numpy as jnp

        return jnp.transpose(x, dims)

    def torch_module(dtype, device):
        from torch_layers.shape import Permute

        return Permute(*dims)

    def jax_module(dtype):
        from jax_layers.shape import Permute

        return Permute(*dims)

    return Case(
        name=name,
        family="shape",
        inputs=(Tensor("input", in_shape),),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        description=f"{in_shape}, dims={dims}",
    )


# nn.Flatten's defaults, then a middle range and torch.flatten's defaults.
register(_flatten_case("flatten", (2, 3, 1, 4), 1, -1))
register(_flatten_case("flatten-middle", (3, 4, 2, 1), 1, 2))
register(_flatten_case("flatten-all", (2, 1, 3), 0, -1))
# Distinct sizes and permutations that are not their own inverse: a gradient permuted by
# `dims` instead of its inverse has the wrong shape, one reshaped instead of permuted the
# wrong values.
register(_permute_case("permute", (2, 1, 3, 4), (2, 0, 3, 1)))
register(_permute_case("permute-negative", (3, 4, 2), (-1, 0, -2)))

# Strided (non-contiguous) torch inputs: a backward that `.view`s its gradient fails here.
register(_reshape_case("reshape-strided", (3, 2, 4), (2, -1)).replace(noncontiguous=True))
register(_permute_case("permute-strided", (2, 3, 4), (1, 2, 0)).replace(noncontiguous=True))
