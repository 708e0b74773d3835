"""Blocks composed only of this package's layers (the twins of torch_layers/block.py), so a
chain of hand-written VJPs is checked end to end. Channels-last, Flax parameter names."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
from flax import nnx

from .conv import Conv
from .linear import Linear
from .norm import GroupNorm, LayerNorm

_act = importlib.import_module("jax_layers.activation")
_conv = importlib.import_module("jax_layers.conv")
_lin = importlib.import_module("jax_layers.linear")
_norm = importlib.import_module("jax_layers.norm")
_pool = importlib.import_module("jax_layers.pool")


def transformer_mlp(x, norm_scale, norm_bias, fc1_kernel, fc1_bias, fc2_kernel, fc2_bias, epsilon: float = 1e-5):
    """`x + fc2(gelu(fc1(layer_norm(x))))`, exact GELU, kernels `(in, out)`."""
    h = _norm.layer_norm(x, norm_scale, norm_bias, epsilon=epsilon)
    h = _act.gelu(_lin.linear(h, fc1_kernel, fc1_bias), approximate=False)
    return x + _lin.linear(h, fc2_kernel, fc2_bias)


class TransformerMLP(nnx.Module):
    """Pre-norm residual MLP: params `norm.{scale,bias}`, `fc1.{kernel,bias}`, `fc2.*`."""

    def __init__(self, d_model: int, d_hidden: int, *, epsilon: float = 1e-5, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.norm = LayerNorm(d_model, epsilon=epsilon, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = Linear(d_model, d_hidden, param_dtype=param_dtype, rngs=rngs)
        self.fc2 = Linear(d_hidden, d_model, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.fc2(_act.gelu(self.fc1(self.norm(x)), approximate=False))


def conv_block(x, conv_kernel, conv_bias, norm_scale, norm_bias, num_groups: int, epsilon: float = 1e-5):
    """`avg_pool(silu(group_norm(conv(x, 3x2, height padded))), 2x2)` for `x (N, H, W, C)`."""
    h = _conv.conv(x, conv_kernel, conv_bias, padding=((1, 1), (0, 0)))
    h = _act.silu(_norm.group_norm(h, num_groups, norm_scale, norm_bias, epsilon=epsilon))
    return _pool.avg_pool(h, (2, 2), strides=(2, 2))


class ConvBlock(nnx.Module):
    """3x2 conv (height padded), GroupNorm, SiLU, 2x2 average pool: params `conv.{kernel,bias}`, `norm.*`."""

    def __init__(self, in_features: int, out_features: int, num_groups: int, *, epsilon: float = 1e-5,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.conv = Conv(in_features, out_features, (3, 2), padding=((1, 1), (0, 0)), param_dtype=param_dtype, rngs=rngs)
        self.norm = GroupNorm(out_features, num_groups, epsilon=epsilon, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _act.silu(self.norm(self.conv(x)))
        return _pool.avg_pool(h, (2, 2), strides=(2, 2))
