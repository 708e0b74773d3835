"""Dropout whose keep mask can be passed in, with a hand-written backward.

torch and JAX draw random bits from different generators, so the same seed never gives the
same mask on both sides. The harness therefore draws one keep mask in numpy and passes it to
both as an ordinary (non-differentiable) input; without a mask, `dropout` draws one from
torch's generator exactly as `torch.nn.functional.dropout` does on CPU.
"""

from __future__ import annotations

import torch
from torch import nn


def _noise(mask: torch.Tensor, p: float, dtype) -> torch.Tensor:
    # The built-in's own steps (a 0/1 tensor in the input's dtype, divided by 1 - p), so
    # the values match it bit for bit.
    noise = mask.to(dtype)
    return noise * 0 if p == 1 else noise.div(1 - p)


class DropoutFunction(torch.autograd.Function):
    """`y = x * mask / (1 - p)`; `dx = g * mask / (1 - p)`; `mask` gets no gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, mask, p):
        return input * _noise(mask, p, input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, mask, ctx.p = inputs
        ctx.save_for_backward(mask)

    @staticmethod
    def backward(ctx, grad_output):
        (mask,) = ctx.saved_tensors
        grad_input = None
        # False only when a floating `mask` alone requires grad (tests/test_layers_dropout.py).
        if ctx.needs_input_grad[0]:
            grad_input = grad_output * _noise(mask, ctx.p, grad_output.dtype)
        return grad_input, None, None


def _check_p(p, name: str = "p") -> float:
    if not 0 <= p <= 1:
        raise ValueError(f"`{name}` (={p}) must be between 0 and 1")
    return p


def check_mask(mask, shape, what: str = "`input`'s shape", name: str = "mask") -> torch.Tensor:
    """`mask` if it is a bool or floating keep mask that broadcasts to `shape` (`what`, in errors)."""
    if not isinstance(mask, torch.Tensor) or not (mask.dtype == torch.bool or mask.is_floating_point()):
        raise ValueError(f"`{name}` (={mask!r:.60}) must be a bool or 0/1 floating tensor")
    shape = torch.Size(shape)
    try:
        fits = torch.broadcast_shapes(mask.shape, shape) == shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"`{name}` (shape {tuple(mask.shape)}) must broadcast to {what} {tuple(shape)}")
    return mask


def dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.dropout`, plus an optional explicit keep `mask`.

    `inplace=True` is accepted but computed out of place (`input` is left untouched).

    Args:
        input: any shape.
        p: the probability of dropping an element.
        training: False returns `input` itself, mask or not, as the built-in does.
        mask: a keep mask (True or 1 keeps), bool or floating, of `input`'s shape or
            broadcastable to it (one draw shared along the broadcast dims). None draws one
            from torch's generator, as the built-in does: on CPU, the same seed gives the
            same result. Pass it explicitly to match another framework, whose RNG differs.

    Returns:
        `input * mask / (1 - p)`, of `input`'s shape.
    """
    _check_p(p)
    if not training:
        return input
    if mask is None:
        if p == 0 or input.numel() == 0:
            return input
        # Same draw as the built-in on CPU: a bernoulli(1 - p) tensor like `input`.
        mask = torch.zeros_like(input) if p == 1 else torch.empty_like(input).bernoulli_(1 - p)
    return DropoutFunction.apply(input, check_mask(mask, input.shape), p)


class Dropout(nn.Module):
    """Drop-in for `torch.nn.Dropout`; `forward(input, mask=None)` also takes a keep mask.

    The two frameworks' RNGs differ, so matching torch and JAX means passing the same mask
    to both (see `dropout`).
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = _check_p(p)
        self.inplace = inplace

    def forward(self, input: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return dropout(input, self.p, self.training, self.inplace, mask=mask)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
