"""Shape layers: the gradient is the output gradient put back into the input's shape."""

from __future__ import annotations

import torch
from torch import nn


class ReshapeFunction(torch.autograd.Function):
    """`input.reshape(shape)`; backward reshapes the gradient to the input's shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, shape):
        return input.reshape(shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.input_shape = inputs[0].shape

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.reshape(ctx.input_shape), None


def _as_shape(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    if not all(isinstance(s, int) for s in shape) or sum(s == -1 for s in shape) > 1 or any(s < -1 for s in shape):
        raise ValueError(f"`shape` (={shape}) must be ints >= -1 with at most one -1")
    return shape


def reshape(input: torch.Tensor, shape) -> torch.Tensor:
    """Drop-in for `torch.reshape`; `shape` may hold one `-1`."""
    return ReshapeFunction.apply(input, _as_shape(shape))


class Reshape(nn.Module):
    """`Reshape(*shape)(x) == reshape(x, shape)`."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = _as_shape(shape)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return reshape(input, self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
