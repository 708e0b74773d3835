"""A pre-norm transformer encoder block on `(N, L, 6)`: `x + attn(norm1(x))`, then
`x + fc2(gelu(fc1(norm2(x))))`; 2 heads of 3, hidden width 10, exact GELU."""

from __future__ import annotations

import jax.numpy as jnp
import torch
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights

EPS = 1e-5  # torch's LayerNorm default (Flax's is 1e-6)


class TorchEncoderBlock(torch.nn.Module):
    """`layers`: `torch.nn` or `torch_layers`."""

    def __init__(self, layers=torch.nn):
        super().__init__()
        self.norm1 = layers.LayerNorm(6, eps=EPS)
        self.attn = layers.MultiheadAttention(6, 2, batch_first=True)
        self.norm2 = layers.LayerNorm(6, eps=EPS)
        self.fc1 = layers.Linear(6, 10)
        self.act = layers.GELU()
        self.fc2 = layers.Linear(10, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


def exact_attention(query, key, value, *, dtype=None, precision=None, **unused):
    """flax.nnx's attention without its fast path: `jax.nn.dot_product_attention`, which
    flax.nnx.dot_product_attention calls when there is no dropout, computed float64 inputs
    4.9e-8 away from float64 attention (float32's accuracy) and does not compile in float16
    on the CPU (`F16_F16_F32` is no CPU precision) with jax 0.10."""
    weights = dot_product_attention_weights(query, key, dtype=dtype, precision=precision)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=precision)


class NnxEncoderBlock(nnx.Module):
    """`layers`: `flax.nnx` or `jax_layers`."""

    def __init__(self, layers=nnx, *, rngs: nnx.Rngs):
        self.layers = layers
        self.norm1 = layers.LayerNorm(6, epsilon=EPS, rngs=rngs)
        # flax.nnx's default attention is float32-accurate in float64 (see `exact_attention`);
        # jax_layers' is its own hand-written one, which this must not replace.
        exact = {"attention_fn": exact_attention} if layers is nnx else {}
        self.attn = layers.MultiHeadAttention(2, 6, decode=False, rngs=rngs, **exact)
        self.norm2 = layers.LayerNorm(6, epsilon=EPS, rngs=rngs)
        self.fc1 = layers.Linear(6, 10, rngs=rngs)
        self.fc2 = layers.Linear(10, 6, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.layers.gelu(self.fc1(self.norm2(x)), approximate=False))
