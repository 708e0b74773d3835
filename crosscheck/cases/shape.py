"""Cases for shape layers."""

from __future__ import annotations

import math

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


def _flatten_case(name, in_shape, dims):
    start_dim, end_dim = dims

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


def _register(make, name, in_shape, option, ranks, noncontiguous=False):
    """The case at its declared shape, then buckets of every rank in `ranks` with sizes 1..5
    (1..4 and 1..2 for dims 2 and 3). A reshape target keeps its form, its first size now the
    divisor `gcd(lead, numel)`; axes stay the same, those counted from the start spelled from
    the end where `negative`."""

    def build(rank, n0, n1, n2, n3, lead, negative):
        shape = (n0, n1, n2, n3)[:rank]
        if make is _reshape_case:
            fitted = (math.gcd(lead, math.prod(shape)), *option[1:])
        else:
            fitted = tuple(d if d < 0 else d - rank * negative for d in option)
        return make(name, shape, fitted).replace(noncontiguous=noncontiguous)

    ranges = dict(rank=ranks, n0=range(1, 6), n1=range(1, 6), n2=range(1, 5), n3=range(1, 3), lead=range(1, 7),
                  negative=(False, True))
    register(make(name, in_shape, option).replace(noncontiguous=noncontiguous), build, ranges)


_register(_reshape_case, "reshape", (2, 3, 4), (4, -1, 1), ranks=range(5))
# nn.Flatten's defaults, then a middle range and torch.flatten's defaults.
_register(_flatten_case, "flatten", (2, 3, 1, 4), (1, -1), ranks=range(2, 5))
_register(_flatten_case, "flatten-middle", (3, 4, 2, 1), (1, 2), ranks=range(3, 5))
_register(_flatten_case, "flatten-all", (2, 1, 3), (0, -1), ranks=range(1, 5))
# Distinct sizes and permutations that are not their own inverse: a gradient permuted by
# `dims` instead of its inverse has the wrong shape, one reshaped instead of permuted the
# wrong values.
_register(_permute_case, "permute", (2, 1, 3, 4), (2, 0, 3, 1), ranks=(4,))
_register(_permute_case, "permute-negative", (3, 4, 2), (-1, 0, -2), ranks=(3,))

# Strided (non-contiguous) torch inputs: a backward that `.view`s its gradient fails here.
_register(_reshape_case, "reshape-strided", (3, 2, 4), (2, -1), ranks=range(2, 5), noncontiguous=True)
_register(_permute_case, "permute-strided", (2, 3, 4), (1, 2, 0), ranks=(3,), noncontiguous=True)
