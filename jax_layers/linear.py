"""Linear layer: `y = x @ kernel + bias`, with a hand-written VJP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()


def _linear(x, kernel, bias):
    y = jnp.matmul(x, kernel)
    return y if bias is None else y + bias


@jax.custom_vjp
def _linear_vjp(x, kernel, bias):
    return _linear(x, kernel, bias)


def _fwd(x, kernel, bias):
    return _linear(x, kernel, bias), (x, kernel, bias)


def _bwd(res, g):
    x, kernel, bias = res
    g2 = g.reshape(-1, kernel.shape[1])
    grad_x = jnp.matmul(g, kernel.T)
    grad_kernel = jnp.matmul(x.reshape(-1, kernel.shape[0]).T, g2)
    grad_bias = None if bias is None else g2.sum(0)
    return grad_x, grad_kernel, grad_bias


_linear_vjp.defvjp(_fwd, _bwd)


def linear(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """`x @ kernel + bias` with a hand-written VJP.

    Args:
        x: `(..., in)`.
        kernel: `(in, out)` (Flax layout; the transpose of torch's `weight`).
        bias: `(out,)` or None.

    Returns:
        `(..., out)`.
    """
    if x.shape[-1:] != kernel.shape[:1]:
        raise ValueError(f"`x` last dim (={x.shape}) must match `kernel` in_features (={kernel.shape})")
    return _linear_vjp(x, kernel, bias)


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
        kernel_init=default_kernel_init,
        bias_init=default_bias_init,
        rngs: nnx.Rngs,
    ):
        # Same key order as flax.nnx.Linear, so equal Rngs give equal parameters.
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype))
        self.bias: nnx.Param | None
        if use_bias:
            self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype))
        else:
            self.bias = nnx.data(None)
        self.in_features = in_features
        self.out_features = out_features
        self.use_bias = use_bias
        self.dtype = dtype
        self.param_dtype = param_dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        bias = None if self.bias is None else self.bias[...]
        if self.dtype is not None:
            x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
            bias = None if bias is None else bias.astype(self.dtype)
        else:
            dtype = jnp.result_type(x, kernel, *(() if bias is None else (bias,)))
            x, kernel = x.astype(dtype), kernel.astype(dtype)
            bias = None if bias is None else bias.astype(dtype)
        return linear(x, kernel, bias)
