"""Linear layer: `y = x @ kernel + bias`, with a hand-written VJP.

The products run through `DotOps` (flax.nnx.Linear's `dot_general`, `precision` and
`preferred_element_type`), the backward's as well as the forward's.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes
from jax import lax

from ._ops import DotOps, params, refuse_out_sharding, widened

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()


DEFAULT = DotOps()


def _linear(ops, x, kernel, bias):
    y = ops(x, kernel, ((x.ndim - 1,), (0,)))
    return y if bias is None else y + bias


_linear_vjp = jax.custom_vjp(_linear, nondiff_argnums=(0,))


def _fwd(ops, x, kernel, bias):
    return _linear(ops, x, kernel, bias), (x, kernel, bias)


def _bwd(ops, res, g):
    x, kernel, bias = res
    # The gradients return in the primals' own types.
    g, x2, k = widened(g, x.reshape(-1, kernel.shape[0]), kernel)
    g2 = g.reshape(-1, kernel.shape[1])
    grad_x = ops(g, k, ((g.ndim - 1,), (1,)))
    grad_kernel = ops(x2, g2, ((0,), (0,)))
    grad_bias = None if bias is None else g2.sum(0).astype(bias.dtype)
    return grad_x.astype(x.dtype), grad_kernel.astype(kernel.dtype), grad_bias


_linear_vjp.defvjp(_fwd, _bwd)


def linear(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
    precision=None, preferred_element_type=None, dot_general: Callable = lax.dot_general,
) -> jax.Array:
    """`x @ kernel + bias` with a hand-written VJP.

    Args:
        x: `(..., in)`.
        kernel: `(in, out)` (Flax layout; the transpose of torch's `weight`).
        bias: `(out,)` or None.
        precision, preferred_element_type, dot_general: as `flax.nnx.Linear`'s; the backward's
            products use them too.

    Returns:
        `(..., out)`.
    """
    if x.shape[-1:] != kernel.shape[:1]:
        raise ValueError(f"`x` last dim (={x.shape}) must match `kernel` in_features (={kernel.shape})")
    return _linear_vjp(DotOps(precision, preferred_element_type, dot_general), x, kernel, bias)


class Linear(nnx.Module):
    """Drop-in for `flax.nnx.Linear`: params `kernel (in, out)` and `bias (out,)`, same init.

    Example:
        >>> layer = Linear(3, 4, rngs=nnx.Rngs(0))
        >>> layer(jnp.ones((2, 3))).shape
        (2, 4)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=default_kernel_init,
        bias_init=default_bias_init,
        dot_general: Callable = lax.dot_general,
        promote_dtype: Callable = dtypes.promote_dtype,
        preferred_element_type=None,
        rngs: nnx.Rngs,
        kernel_metadata=MappingProxyType({}),
        bias_metadata=MappingProxyType({}),
    ):
        # Same key order as flax.nnx.Linear, so equal Rngs give equal parameters.
        self.kernel, self.bias = params((in_features, out_features), out_features, use_bias, param_dtype,
                                        kernel_init, bias_init, rngs, kernel_metadata, bias_metadata)
        self.in_features, self.out_features, self.use_bias = in_features, out_features, use_bias
        self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
        self.dot_general, self.promote_dtype = dot_general, promote_dtype
        self.preferred_element_type = preferred_element_type

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        """`(..., in) -> (..., out)`."""
        refuse_out_sharding(out_sharding, "flax.nnx.Linear")
        bias = None if self.bias is None else self.bias[...]
        x, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)
        return linear(x, kernel, bias, precision=self.precision, preferred_element_type=self.preferred_element_type,
                      dot_general=self.dot_general)
