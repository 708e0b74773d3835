"""A small CNN, `(N, 3, 2, 3)` (NCHW; NHWC in NNX) `-> (N, 6)`: a 3x2 conv (height padded),
BatchNorm, SiLU, a 2x2 average pool down to 1x1, flatten, Linear.

Pooling down to one pixel makes the flatten the same in both layouts, so the head's weight
needs no reordering between NCHW and NHWC.
"""

from __future__ import annotations

import torch
from flax import nnx


class TorchCNN(torch.nn.Module):
    """`layers`: `torch.nn` or `torch_layers`."""

    def __init__(self, layers=torch.nn):
        super().__init__()
        self.features = torch.nn.Sequential(
            layers.Conv2d(3, 4, (3, 2), padding=(1, 0)), layers.BatchNorm2d(4), layers.SiLU(), layers.AvgPool2d(2)
        )
        self.flatten = layers.Flatten()
        self.head = layers.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.features(x)))


class NnxCNN(nnx.Module):
    """`layers`: `flax.nnx` or `jax_layers`."""

    def __init__(self, layers=nnx, *, rngs: nnx.Rngs):
        self.layers = layers
        self.features = nnx.Sequential(
            layers.Conv(3, 4, (3, 2), padding=((1, 1), (0, 0)), rngs=rngs), layers.BatchNorm(4, rngs=rngs)
        )
        self.head = layers.Linear(4, 6, rngs=rngs)

    def __call__(self, x):
        h = self.layers.avg_pool(self.layers.silu(self.features(x)), (2, 2), strides=(2, 2))
        return self.head(h.reshape(h.shape[0], -1))
