"""2-d max and average pooling with hand-written backward passes.

Max pooling routes each output gradient to the one input that won its window (the index the
forward recorded), summing where overlapping windows share a winner. Average pooling spreads
each output gradient, divided by its window's divisor, evenly over the window: the transposed
convolution of `grad / divisor` with a kernel of ones, one channel at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaxPool2dFunction(torch.autograd.Function):
    """`F.max_pool2d` on `(N, C, H, W)`; returns `(out, indices)`, indices into each `H * W` plane."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, kernel_size, stride, padding, dilation, ceil_mode):
        return F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input = inputs[0]
        _, indices = output
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        ctx.input_shape = tuple(input.shape)

    @staticmethod
    def backward(ctx, grad_output, grad_indices):
        # No `needs_input_grad` test: `input` is the one tensor argument, so backward runs only
        # when it needs a gradient.
        (indices,) = ctx.saved_tensors
        n, c, h, w = ctx.input_shape
        # Accumulate, not assign: with overlapping windows one input can win several.
        flat = grad_output.new_zeros((n, c, h * w)).scatter_add(2, indices.flatten(2), grad_output.flatten(2))
        return flat.reshape(n, c, h, w), None, None, None, None, None


def _window_counts(size, out, k, s, p, ceil_mode, count_include_pad):
    """Per output row of one axis, how many rows its window counts (torch's avg_pool2d rule)."""
    counts = []
    for o in range(out):
        start = o * s - p
        end = min(start + k, size + p)  # windows never count past the far padding
        if count_include_pad:
            counts.append(end - start)
        else:
            counts.append(min(end, size) - max(start, 0))
    return counts


def window_sum_grad(grad_output, input_shape, kernel_size, stride, padding):
    """The adjoint of summing `(kH, kW)` windows: each output gradient back over its window."""
    c = grad_output.shape[1]
    ones = grad_output.new_ones((c, 1, *kernel_size))
    canvas = F.conv_transpose2d(grad_output, ones, None, stride, groups=c)
    # The canvas starts at the padded origin; the input starts `padding` later and may run past
    # the canvas's end where the last rows fit no window (or fall short of it in ceil mode).
    crop = []
    for size, full, p in zip(reversed(input_shape[2:]), reversed(canvas.shape[2:]), reversed(padding)):
        crop += [-p, p + size - full]
    return F.pad(canvas, crop)


class AvgPool2dFunction(torch.autograd.Function):
    """`F.avg_pool2d` on `(N, C, H, W)`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        return F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, *config = inputs
        ctx.input_shape = tuple(input.shape)
        ctx.config = config

    @staticmethod
    def backward(ctx, grad_output):
        # No `needs_input_grad` test: `input` is the one tensor argument (as in max pooling).
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override = ctx.config
        if divisor_override:
            divisor = divisor_override
        else:
            rows, cols = (
                _window_counts(n, o, k, s, p, ceil_mode, count_include_pad)
                for n, o, k, s, p in zip(ctx.input_shape[2:], grad_output.shape[2:], kernel_size, stride, padding)
            )
            factory = {"dtype": grad_output.dtype, "device": grad_output.device}
            divisor = torch.tensor(rows, **factory)[:, None] * torch.tensor(cols, **factory)
        grad_input = window_sum_grad(grad_output / divisor, ctx.input_shape, kernel_size, stride, padding)
        return grad_input, None, None, None, None, None, None


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    t = (value, value) if isinstance(value, int) else tuple(value)
    if len(t) == 1:
        t = t * 2
    if len(t) != 2 or not all(isinstance(v, int) and v >= minimum for v in t):
        what = "positive" if minimum > 0 else "non-negative"
        raise ValueError(f"`{name}` (={value}) must be a {what} int or a pair of them")
    return t


def _pool_args(input, kernel_size, stride, padding, dilation=1):
    """Checked `(input as NCHW, unbatched?, kernel_size, stride, padding, dilation)`."""
    if input.dim() not in (3, 4):
        raise ValueError(f"`input` (shape {tuple(input.shape)}) must have 3 or 4 dims")
    kernel_size = _pair(kernel_size, "kernel_size", 1)
    # torch treats an empty stride like None: the window's own size.
    stride = kernel_size if stride is None or stride == [] or stride == () else _pair(stride, "stride", 1)
    padding, dilation = _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    for p, k, d in zip(padding, kernel_size, dilation):
        if p > (d * (k - 1) + 1) // 2:
            raise ValueError(f"`padding` (={padding}) must be at most half the dilated `kernel_size` (={kernel_size})")
    unbatched = input.dim() == 3
    return (input.unsqueeze(0) if unbatched else input), unbatched, kernel_size, stride, padding, dilation


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Drop-in for `torch.nn.functional.max_pool2d`.

    Args:
        input: `(N, C, H, W)` or unbatched `(C, H, W)`.

    Returns:
        `(N, C, H_out, W_out)` (or without `N`), and with `return_indices` also the int64
        indices of the winners in each flattened `H * W` plane, of the same shape.
    """
    x, unbatched, kernel_size, stride, padding, dilation = _pool_args(input, kernel_size, stride, padding, dilation)
    out, indices = MaxPool2dFunction.apply(x, kernel_size, stride, padding, dilation, bool(ceil_mode))
    if unbatched:
        out, indices = out.squeeze(0), indices.squeeze(0)
    return (out, indices) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Drop-in for `torch.nn.functional.avg_pool2d`.

    Args:
        input: `(N, C, H, W)` or unbatched `(C, H, W)`.

    Returns:
        `(N, C, H_out, W_out)` (or without `N`).
    """
    x, unbatched, kernel_size, stride, padding, _ = _pool_args(input, kernel_size, stride, padding)
    if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override == 0):
        raise ValueError(f"`divisor_override` (={divisor_override}) must be a non-zero int or None")
    out = AvgPool2dFunction.apply(x, kernel_size, stride, padding, bool(ceil_mode), bool(count_include_pad),
                                  divisor_override)
    return out.squeeze(0) if unbatched else out


class MaxPool2d(nn.Module):
    """Drop-in for `torch.nn.MaxPool2d`."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input: torch.Tensor):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(nn.Module):
    """Drop-in for `torch.nn.AvgPool2d`."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
