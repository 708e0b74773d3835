"""Softmax and log-softmax along one dim, with hand-written backward passes.

Both backward passes read only the saved output: with `y = softmax(x)`,
`dx = y (g - sum(g y))`; with `y = log_softmax(x)`, `dx = g - exp(y) sum(g)`, the sums along
`dim`. bfloat16 and float16 backward passes run in float32 and round once, as torch's own
kernels do.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class SoftmaxFunction(torch.autograd.Function):
    """`y = exp(x) / sum(exp(x))` along `dim`; `dx = y (g - sum(g y, dim))`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, dim):
        return torch.softmax(input, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        wy, wg = _wide(y), _wide(grad_output)
        return (wy * (wg - (wg * wy).sum(ctx.dim, keepdim=True))).to(grad_output.dtype), None


class LogSoftmaxFunction(torch.autograd.Function):
    """`y = x - log(sum(exp(x)))` along `dim`; `dx = g - exp(y) sum(g, dim)`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, dim):
        return torch.log_softmax(input, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dim = inputs[1]
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        wy, wg = _wide(y), _wide(grad_output)
        return (wg - torch.exp(wy) * wg.sum(ctx.dim, keepdim=True)).to(grad_output.dtype), None


def _dim(name: str, input: torch.Tensor, dim, stacklevel: int) -> int:
    if dim is None:
        # torch's legacy rule, with its warning: dim 0 for 0-, 1- and 3-dim inputs, else 1.
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. "
            "Change the call to include dim=X as an argument.",
            stacklevel=stacklevel,
        )
        dim = 0 if input.ndim in (0, 1, 3) else 1
    rank = max(input.ndim, 1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < rank:
        raise ValueError(f"`dim` (={dim}) must be an int in [{-rank}, {rank - 1}] for a {input.ndim}-dim input")
    return dim % rank


def softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.softmax`.

    Args:
        input: any shape, `(..., n, ...)` with `n` at `dim`; empty and 0-dim included.
        dim: the dim that sums to 1; None picks torch's legacy default, with its warning.
        dtype: if given, `input` is cast to it first (as the built-in does).

    Returns:
        The shape of `input`.
    """
    if dtype is not None:
        input = input.to(dtype)
    return SoftmaxFunction.apply(input, _dim("softmax", input, dim, _stacklevel))


def log_softmax(input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.log_softmax`; arguments as `softmax`."""
    if dtype is not None:
        input = input.to(dtype)
    return LogSoftmaxFunction.apply(input, _dim("log_softmax", input, dim, _stacklevel))


class Softmax(nn.Module):
    """Drop-in for `torch.nn.Softmax`."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(nn.Module):
    """Drop-in for `torch.nn.LogSoftmax`."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return log_softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
