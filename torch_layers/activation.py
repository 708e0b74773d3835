"""Elementwise activations with hand-written backward passes.

Every function maps a tensor of any shape (unbatched, empty and 0-dim included) to one of the
same shape and dtype. Forwards call torch's own kernels, so values match the built-ins bit for
bit; only the backward passes are ours.

`inplace=True` is accepted wherever the built-in has it, but computed out of place: the result
is a new tensor and `input` is left untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SigmoidFunction(torch.autograd.Function):
    """`y = 1 / (1 + exp(-x))`; `dy/dx = y (1 - y)` from the saved output."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input):
        return torch.sigmoid(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * y * (1 - y)


class TanhFunction(torch.autograd.Function):
    """`y = tanh(x)`; `dy/dx = 1 - y^2` from the saved output."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input):
        return torch.tanh(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y * y)


class ReLUFunction(torch.autograd.Function):
    """`y = max(x, 0)`; the gradient passes where `y > 0` (zero at the kink, as torch)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input):
        return torch.relu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return torch.where(y > 0, grad_output, torch.zeros_like(grad_output))


class LeakyReLUFunction(torch.autograd.Function):
    """`y = x` for `x > 0`, else `negative_slope * x`; slope 1 or `negative_slope` likewise."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, negative_slope):
        return F.leaky_relu(input, negative_slope)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.negative_slope = inputs
        ctx.save_for_backward(input)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, grad_output, grad_output * ctx.negative_slope), None


class ELUFunction(torch.autograd.Function):
    """`y = x` for `x > 0`, else `alpha (exp(x) - 1)`; slope 1 or `alpha exp(x)`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, alpha):
        return F.elu(input, alpha)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.alpha = inputs
        ctx.save_for_backward(input)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        # exp of the clamped input: no overflow on the branch that `where` discards, so no
        # inf * 0 = NaN in the double backward.
        negative = ctx.alpha * torch.exp(torch.clamp(x, max=0))
        return torch.where(x > 0, grad_output, grad_output * negative), None


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_CUBIC = 0.044715


class GELUFunction(torch.autograd.Function):
    """`y = x Phi(x)`, exact (`approximate="none"`) or with torch's tanh approximation.

    Exact: `dy/dx = Phi(x) + x phi(x)`. Tanh: with `u = k (x + c x^3)`, `t = tanh(u)`,
    `dy/dx = (1 + t) / 2 + x (1 - t^2) k (1 + 3 c x^2) / 2`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, approximate):
        return F.gelu(input, approximate=approximate)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.approximate = inputs
        ctx.save_for_backward(input)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        if ctx.approximate == "tanh":
            t = torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x))
            dt = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x * x)
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dt
        else:
            cdf = 0.5 * (1 + torch.erf(x * _INV_SQRT_2))
            pdf = _INV_SQRT_2PI * torch.exp(-0.5 * x * x)
            slope = cdf + x * pdf
        return grad_output * slope, None


class SiLUFunction(torch.autograd.Function):
    """`y = x sigmoid(x)`; `dy/dx = s (1 + x (1 - s))` with `s = sigmoid(x)`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input):
        return F.silu(input)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * s * (1 + x * (1 - s))


class SoftplusFunction(torch.autograd.Function):
    """`y = log(1 + exp(beta x)) / beta`, or `x` where `beta x > threshold`.

    `dy/dx = sigmoid(beta x)`, or 1 past the threshold (torch's rule, a jump at the switch).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, beta, threshold):
        return F.softplus(input, beta, threshold)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, ctx.beta, ctx.threshold = inputs
        ctx.save_for_backward(input)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        bx = x * ctx.beta
        return torch.where(bx > ctx.threshold, grad_output, grad_output * torch.sigmoid(bx)), None, None


def sigmoid(input: torch.Tensor) -> torch.Tensor:
    """Drop-in for `torch.sigmoid`."""
    return SigmoidFunction.apply(input)


def tanh(input: torch.Tensor) -> torch.Tensor:
    """Drop-in for `torch.tanh`."""
    return TanhFunction.apply(input)


def relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.relu` (`inplace` computed out of place)."""
    return ReLUFunction.apply(input)


def leaky_relu(input: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.leaky_relu` (`inplace` computed out of place)."""
    return LeakyReLUFunction.apply(input, negative_slope)


def elu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.elu` (`inplace` computed out of place)."""
    return ELUFunction.apply(input, alpha)


def _check_approximate(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"`approximate` (={approximate!r}) must be 'none' or 'tanh'")
    return approximate


def gelu(input: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Drop-in for `torch.nn.functional.gelu`; `approximate` is "none" (erf) or "tanh"."""
    return GELUFunction.apply(input, _check_approximate(approximate))


def silu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.silu` (`inplace` computed out of place)."""
    return SiLUFunction.apply(input)


def softplus(input: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.softplus`: `x` itself where `beta x > threshold`."""
    return SoftplusFunction.apply(input, beta, threshold)


class Sigmoid(nn.Module):
    """Drop-in for `torch.nn.Sigmoid`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return sigmoid(input)


class Tanh(nn.Module):
    """Drop-in for `torch.nn.Tanh`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return tanh(input)


class _Inplace(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    """Drop-in for `torch.nn.ReLU` (`inplace` computed out of place)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return relu(input, self.inplace)


class SiLU(_Inplace):
    """Drop-in for `torch.nn.SiLU` (`inplace` computed out of place)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return silu(input, self.inplace)


class LeakyReLU(nn.Module):
    """Drop-in for `torch.nn.LeakyReLU` (`inplace` computed out of place)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}{', inplace=True' if self.inplace else ''}"


class ELU(nn.Module):
    """Drop-in for `torch.nn.ELU` (`inplace` computed out of place)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}{', inplace=True' if self.inplace else ''}"


class GELU(nn.Module):
    """Drop-in for `torch.nn.GELU`."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = _check_approximate(approximate)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softplus(nn.Module):
    """Drop-in for `torch.nn.Softplus`."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"
