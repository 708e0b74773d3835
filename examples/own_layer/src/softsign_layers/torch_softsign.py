"""softsign for PyTorch: an `autograd.Function` with its own backward, and a drop-in for
`torch.nn.Softsign`."""

from __future__ import annotations

import torch
from torch import nn


class SoftsignFunction(torch.autograd.Function):
    """`y = x / (1 + |x|)`; `dy/dx = 1 / (1 + |x|)^2`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input):
        return input / (1 + input.abs())

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_output):
        # Differentiable torch ops, so that double backward (Hessian products) works.
        (x,) = ctx.saved_tensors
        return grad_output / (1 + x.abs()) ** 2


def softsign(input: torch.Tensor) -> torch.Tensor:
    """Like `torch.nn.functional.softsign`, with the backward above."""
    return SoftsignFunction.apply(input)


class Softsign(nn.Module):
    """Like `torch.nn.Softsign`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return softsign(input)
