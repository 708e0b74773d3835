"""Linear layer: `y = x W^T + b`, with a hand-written backward."""

from __future__ import annotations

import math

import torch
from torch import nn


class LinearFunction(torch.autograd.Function):
    """`y = x @ weight.T + bias` for `x` of shape `(..., in)` and `weight` of shape `(out, in)`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias):
        out = torch.matmul(input, weight.mT)
        return out if bias is None else out + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias = inputs
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        # Leading batch dims (none, one or many) flatten into one row axis.
        g2 = grad_output.reshape(-1, weight.shape[0])
        if ctx.needs_input_grad[0]:
            grad_input = torch.matmul(grad_output, weight)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.matmul(g2.mT, input.reshape(-1, weight.shape[1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = g2.sum(0)
        return grad_input, grad_weight, grad_bias


def linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.linear`.

    Args:
        input: `(..., in)`, including unbatched `(in,)` and empty `(0, in)`.
        weight: `(out, in)`.
        bias: `(out,)` or None.

    Returns:
        `(..., out)`.
    """
    if input.shape[-1:] != weight.shape[-1:]:
        raise ValueError(
            f"`input` last dim (={tuple(input.shape)}) must match `weight` in_features (={tuple(weight.shape)})"
        )
    return LinearFunction.apply(input, weight, bias)


class Linear(nn.Module):
    """Drop-in for `torch.nn.Linear`: parameters `weight (out, in)` and `bias (out,)`, same init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty((out_features, in_features), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same draws, in the same order, as torch.nn.Linear.reset_parameters.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
