"""Cases for `linear`: torch weight `(out, in)` <-> Flax kernel `(in, out)`."""

from __future__ import annotations

import functools

from ..layout import TRANSPOSE
from ..registry import Case, Tensor, register


def torch_fn(x, weight, bias=None):
    import torch_layers

    return torch_layers.linear(x, weight, bias)


def torch_ref(x, weight, bias=None):
    import torch.nn.functional as F

    return F.linear(x, weight, bias)


def jax_fn(x, kernel, bias=None):
    import jax_layers

    return jax_layers.linear(x, kernel, bias)


def jax_ref(x, kernel, bias=None):
    import jax

    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    return y if bias is None else y + bias


def user_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """A user's `dot_general` as flax.nnx.Linear takes one (a wrapper, as for counting or
    quantizing), without the `out_sharding` that `lax.dot_general` has."""
    import jax

    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)


def _flax_options():
    """flax.nnx.Linear's own arguments, for the case that passes them."""
    import jax

    return {"precision": jax.lax.Precision.HIGHEST, "dot_general": user_dot_general}


def jax_fn_flax_options(x, kernel, bias=None):
    import jax_layers

    return jax_layers.linear(x, kernel, bias, **_flax_options())


# The modules' factories are module-level, their options bound by `functools.partial` in
# `_case`: they then pickle by reference, which closures do not.


def _torch_module(dtype, device, *, in_features, out_features, bias):
    import torch_layers

    return torch_layers.Linear(in_features, out_features, bias=bias, dtype=dtype, device=device)


def _jax_module(dtype, *, in_features, out_features, bias, flax_options):
    from flax import nnx

    import jax_layers

    # A user's precision, dot_general, promote_dtype and parameter metadata (no mesh: a
    # plain annotation), which the backward must carry through.
    options = {**_flax_options(), "promote_dtype": nnx.nn.dtypes.promote_dtype,
               "kernel_metadata": {"note": "kernel"}, "bias_metadata": {"note": "bias"}} if flax_options else {}
    return jax_layers.Linear(
        in_features, out_features, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0), **options
    )


def linear_params(in_features: int, out_features: int, bias: bool = True) -> tuple[Tensor, ...]:
    """torch.nn.Linear's parameters, with their place in flax.nnx.Linear."""
    weight = Tensor("weight", (out_features, in_features), layout=TRANSPOSE, jax_name="kernel")
    return (weight, Tensor("bias", (out_features,), jax_name="bias")) if bias else (weight,)


def _case(name, batch, in_features, out_features, bias=True, noncontiguous=False, flax_options=False):
    features = dict(in_features=in_features, out_features=out_features, bias=bias)
    return Case(
        name=name,
        family="linear",
        inputs=(Tensor("input", (*batch, in_features)),),
        params=linear_params(in_features, out_features, bias),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn_flax_options if flax_options else jax_fn,
        jax_ref=jax_ref,
        torch_module=functools.partial(_torch_module, **features),
        jax_module=functools.partial(_jax_module, **features, flax_options=flax_options),
        noncontiguous=noncontiguous,
        description=f"x {(*batch, in_features)} -> {(*batch, out_features)}, bias={bias}"
        + (", strided inputs" if noncontiguous else "")
        + (", nnx precision/dot_general/promote_dtype/metadata" if flax_options else ""),
    )


def _bucket(name, leading, batch, in_features, out_features, **options):
    """The case at one bucket's sizes: `leading` batch dims of sizes `batch`, `batch + 1`, ..."""
    return _case(name, tuple(batch + i for i in range(leading)), in_features, out_features, **options)


def _register(name, batch, in_features, out_features, **options):
    """The case at its declared shapes, with every batch rank (0..2), batch size (1..3) and
    feature size (1..8) as further shape buckets; `_case`'s options as given."""
    ranges = dict(leading=range(3), batch=range(1, 4), in_features=range(1, 9), out_features=range(1, 9))
    build = functools.partial(_bucket, name, **options)
    register(_case(name, batch, in_features, out_features, **options), build, ranges)


# Two leading batch dims, one of size 1: a bias gradient that forgets to sum hides there.
_register("linear", (4, 1), 7, 5)
_register("linear-nobias", (3,), 6, 2, bias=False)
_register("linear-unbatched", (), 5, 3)
_register("linear-strided", (2, 3), 4, 6, noncontiguous=True)
_register("linear-nnx-options", (2, 1, 3), 5, 4, flax_options=True)
