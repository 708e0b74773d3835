"""A small MLP, `(..., 5) -> (..., 3)`: Linear, tanh, Linear, in `nn.Sequential` / `nnx.Sequential`."""

from __future__ import annotations

import torch
from flax import nnx


class TorchMLP(torch.nn.Sequential):
    """`layers`: `torch.nn` or `torch_layers` (its drop-ins)."""

    def __init__(self, layers=torch.nn):
        super().__init__(layers.Linear(5, 7), layers.Tanh(), layers.Linear(7, 3))


class NnxMLP(nnx.Sequential):
    """`layers`: `flax.nnx` or `jax_layers` (its drop-ins)."""

    def __init__(self, layers=nnx, *, rngs: nnx.Rngs):
        super().__init__(layers.Linear(5, 7, rngs=rngs), layers.tanh, layers.Linear(7, 3, rngs=rngs))
