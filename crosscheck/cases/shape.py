"""Cases for shape layers."""

from __future__ import annotations

import functools
import importlib
import math

from ..registry import Case, Tensor, register

# The case's functions are module-level, their options bound by `functools.partial` in
# `_case`: they then pickle by reference, which closures do not.


def _call(module, name, args, x):
    """`module.name(x, *args)`, `module` imported by name."""
    return getattr(importlib.import_module(module), name)(x, *args)


def _module(module, name, args, *dtype_device):
    """`module.name(*args)` as `torch_module(dtype, device)` or `jax_module(dtype)`: the shape
    layers take neither."""
    return getattr(importlib.import_module(module), name)(*args)


def _flatten_jax_ref(start_dim, end_dim, x):
    import jax.numpy as jnp

    start, end = start_dim % x.ndim, end_dim % x.ndim
    shape = x.shape
    return jnp.reshape(x, (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :]))


def _case(name, in_shape, fn, args, layer_args, jax_ref, description):
    """`fn` of torch_layers, jax_layers and torch (`fn(x, *args)`) against `jax_ref`; the
    modules, `fn` capitalized, take `layer_args`."""
    layer = fn.capitalize()
    return Case(
        name=name,
        family="shape",
        inputs=(Tensor("input", in_shape),),
        torch_fn=functools.partial(_call, "torch_layers.shape", fn, args),
        torch_ref=functools.partial(_call, "torch", fn, args),
        jax_fn=functools.partial(_call, "jax_layers.shape", fn, args),
        jax_ref=jax_ref,
        torch_module=functools.partial(_module, "torch_layers.shape", layer, layer_args),
        jax_module=functools.partial(_module, "jax_layers.shape", layer, layer_args),
        description=description,
    )


def _reshape_case(name, in_shape, shape):
    jax_ref = functools.partial(_call, "jax.numpy", "reshape", (shape,))
    return _case(name, in_shape, "reshape", (shape,), shape, jax_ref, f"{in_shape} -> {shape}")


def _flatten_case(name, in_shape, dims):
    start_dim, end_dim = dims
    jax_ref = functools.partial(_flatten_jax_ref, start_dim, end_dim)
    description = f"{in_shape}, start_dim={start_dim}, end_dim={end_dim}"
    return _case(name, in_shape, "flatten", dims, dims, jax_ref, description)


def _permute_case(name, in_shape, dims):
    jax_ref = functools.partial(_call, "jax.numpy", "transpose", (dims,))
    return _case(name, in_shape, "permute", (dims,), dims, jax_ref, f"{in_shape}, dims={dims}")


def _bucket(make, name, option, noncontiguous, rank, n0, n1, n2, n3, lead, negative):
    """The case of `make` at one bucket's sizes, `option` fitted to them (see `_register`)."""
    shape = (n0, n1, n2, n3)[:rank]
    if make is _reshape_case:
        fitted = (math.gcd(lead, math.prod(shape)), *option[1:])
    else:
        fitted = tuple(d if d < 0 else d - rank * negative for d in option)
    return make(name, shape, fitted).replace(noncontiguous=noncontiguous)


def _register(make, name, in_shape, option, ranks, noncontiguous=False):
    """The case at its declared shape, then buckets of every rank in `ranks` with sizes 1..5
    (1..4 and 1..2 for dims 2 and 3). A reshape target keeps its form, its first size now the
    divisor `gcd(lead, numel)`; axes stay the same, those counted from the start spelled from
    the end where `negative`."""
    ranges = dict(rank=ranks, n0=range(1, 6), n1=range(1, 6), n2=range(1, 5), n3=range(1, 3), lead=range(1, 7),
                  negative=(False, True))
    build = functools.partial(_bucket, make, name, option, noncontiguous)
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
