"""The products and parameters of Linear and Conv, as flax.nnx's modules let a user choose them.

`DotOps` and `ConvOps` carry a `lax.dot_general` / `lax.conv_general_dilated`-like function
with its `precision` and `preferred_element_type`. They are static arguments of the custom
VJPs (hashable tuples), so the backward's products run through the same function at the same
precision as the forward's.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
from flax import nnx
from jax import lax


def _preferred(preferred_element_type) -> dict:
    # Passed only when set: a user's function need not take it (as in flax.nnx.Linear / Conv).
    return {} if preferred_element_type is None else {"preferred_element_type": preferred_element_type}


class DotOps(NamedTuple):
    """How Linear's products are taken."""

    precision: Any = None
    preferred_element_type: Any = None
    dot_general: Callable = lax.dot_general

    def __call__(self, a, b, contract):
        """`a` contracted with `b` over `contract = ((a axes), (b axes))`, no batch axes."""
        return self.dot_general(a, b, (contract, ((), ())), precision=self.precision,
                                **_preferred(self.preferred_element_type))


class ConvOps(NamedTuple):
    """How Conv's convolutions (forward and both gradients) are taken."""

    precision: Any = None
    preferred_element_type: Any = None
    conv_general_dilated: Callable = lax.conv_general_dilated

    def __call__(self, lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, groups):
        return self.conv_general_dilated(
            lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count=groups,
            precision=self.precision, **_preferred(self.preferred_element_type),
        )


def widened(g, *primals):
    """The cotangent and the primals in one type: with `preferred_element_type` the cotangent
    may be wider than the primals, and the backward's products take both in the wider one."""
    dtype = jnp.result_type(g, *primals)
    return g.astype(dtype), *(p.astype(dtype) for p in primals)


def params(kernel_shape, out_features, use_bias, param_dtype, kernel_init, bias_init, rngs, kernel_metadata,
           bias_metadata):
    """`(kernel, bias)` drawn as flax.nnx's Linear and Conv draw them, the kernel first, each an
    `nnx.Param` with its metadata (sharding names, ...); the bias `None` without `use_bias`."""
    kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape, param_dtype), **kernel_metadata)
    if not use_bias:
        return kernel, nnx.data(None)
    return kernel, nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype), **bias_metadata)


def refuse_out_sharding(out_sharding, builtin: str) -> None:
    """The error for flax.nnx's `out_sharding`, which the hand-written backwards do not follow."""
    if out_sharding is not None:
        raise ValueError(
            f"`out_sharding` (={out_sharding!r}) is not supported (the backward's products are not "
            f"sharded to match); use {builtin}"
        )
