"""Convolutions (1-d, 2-d, transposed 2-d) with hand-written backward passes.

Torch layouts throughout: input `(N, C, *spatial)`; a convolution's weight is
`(out, in/groups, *kernel)`, a transposed convolution's `(in, out/groups, *kernel)`.
Both gradients of a convolution are convolutions again: the input gradient is the
transposed convolution of the output gradient with the same weight, and the weight gradient
correlates the input with the output gradient, with the batch axis as the contracted channel
axis and stride and dilation trading places.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._pad import MODES, pad

_CONV = {1: F.conv1d, 2: F.conv2d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


def _conv(x, weight, bias, stride, pads, dilation, groups):
    """`conv` with per-dim `(lo, hi)` zero padding; uneven pads go through `F.pad`."""
    conv = _CONV[weight.dim() - 2]
    if all(lo == hi for lo, hi in pads):
        return conv(x, weight, bias, stride, tuple(lo for lo, _ in pads), dilation, groups)
    return conv(F.pad(x, [p for pair in reversed(pads) for p in pair]), weight, bias, stride, 0, dilation, groups)


def _crop(t, sizes, starts=None):
    """`t[:, :, s0:s0+n0, s1:s1+n1, ...]`."""
    starts = starts or (0,) * len(sizes)
    return t[(slice(None), slice(None), *(slice(s, s + n) for s, n in zip(starts, sizes)))]


def _correlate(a, b, kernel_size, stride, pads, dilation, groups):
    """`out[j, i, k] = sum_{n, p} a_pad[n, i, k * dilation + p * stride] b[n, j, p]`, per group.

    With `a` the input and `b` the output gradient this is a convolution's weight gradient,
    `(C_b, C_a / groups, *kernel_size)`; with the two swapped, a transposed convolution's.
    """
    n, c_a, spatial = a.shape[0], a.shape[1], a.shape[2:]
    if n == 0:
        return a.new_zeros((b.shape[1], c_a // groups, *kernel_size))
    # (N, G * Ca/G, ...) -> (Ca/G, G * N, ...): channels become the batch, the samples of each
    # group its input channels, so that the group sum of samples is the convolution's sum.
    at = a.reshape(n, groups, c_a // groups, *spatial).transpose(0, 2).reshape(c_a // groups, groups * n, *spatial)
    out = _conv(at, b.transpose(0, 1), None, dilation, pads, stride, groups)
    # Rows past the last full window (a stride that does not divide evenly) are dropped.
    return _crop(out.transpose(0, 1), kernel_size)


class ConvFunction(torch.autograd.Function):
    """N-d convolution, `pads` one `(lo, hi)` pair per spatial dim."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, stride, pads, dilation, groups):
        return _conv(input, weight, bias, stride, pads, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, stride, pads, dilation, groups = inputs
        ctx.save_for_backward(input, weight)
        ctx.config = stride, pads, dilation, groups
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        stride, pads, dilation, groups = ctx.config
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = conv_input_grad(grad_output, weight, input.shape, stride, pads, dilation, groups)
        if ctx.needs_input_grad[1]:
            grad_weight = _correlate(input, grad_output, weight.shape[2:], stride, pads, dilation, groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum([0, *range(2, grad_output.dim())])
        return grad_input, grad_weight, grad_bias, None, None, None, None


def conv_input_grad(grad_output, weight, input_shape, stride, pads, dilation, groups):
    """The transposed convolution of `grad_output`, back to `input_shape`."""
    spatial = input_shape[2:]
    kernel = [d * (k - 1) + 1 for d, k in zip(dilation, weight.shape[2:])]
    # Trailing input rows that no window reached (a stride that does not divide evenly):
    # output_padding gives them back, with zero gradient.
    extra = [
        h + lo + hi - ((o - 1) * s + k)
        for h, (lo, hi), o, s, k in zip(spatial, pads, grad_output.shape[2:], stride, kernel)
    ]
    conv_t = _CONV_T[weight.dim() - 2]
    if all(lo == hi for lo, hi in pads):
        lo = tuple(lo for lo, _ in pads)
        return conv_t(grad_output, weight, None, stride, lo, extra, groups, dilation)
    full = conv_t(grad_output, weight, None, stride, 0, extra, groups, dilation)
    return _crop(full, spatial, [lo for lo, _ in pads])


class ConvTranspose2dFunction(torch.autograd.Function):
    """`F.conv_transpose2d`; its input gradient is the plain convolution of the output gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, stride, padding, output_padding, groups, dilation):
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, stride, padding, output_padding, groups, dilation = inputs
        ctx.save_for_backward(input, weight)
        ctx.config = stride, padding, groups, dilation
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        stride, padding, groups, dilation = ctx.config
        pads = tuple((p, p) for p in padding)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # output_padding rows lie past the last input row's reach: crop them off.
            full = F.conv2d(grad_output, weight, None, stride, padding, dilation, groups)
            grad_input = _crop(full, input.shape[2:])
        if ctx.needs_input_grad[1]:
            grad_weight = _correlate(grad_output, input, weight.shape[2:], stride, pads, dilation, groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum([0, 2, 3])
        return grad_input, grad_weight, grad_bias, None, None, None, None, None


def _tuple(value, n: int, name: str) -> tuple[int, ...]:
    t = (value,) * n if isinstance(value, int) else tuple(value)
    t = t * n if len(t) == 1 else t  # torch expands a single entry too
    if len(t) != n or not all(isinstance(v, int) for v in t):
        raise ValueError(f"`{name}` (={value}) must be an int or {n} ints")
    return t


def _positive(value, n: int, name: str) -> tuple[int, ...]:
    t = _tuple(value, n, name)
    if any(v <= 0 for v in t):
        raise ValueError(f"`{name}` (={value}) must be positive")
    return t


def _pads(padding, kernel_size, stride, dilation) -> tuple[tuple[int, int], ...]:
    """torch's `padding` (ints, "valid" or "same") as one `(lo, hi)` pair per spatial dim."""
    n = len(kernel_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(f"`padding` (={padding!r}) must be 'same', 'valid', an int or {n} ints")
        if any(s != 1 for s in stride):
            raise ValueError(f"`padding` (={padding!r}) is not supported with `stride` (={stride}) other than 1")
        # torch's convention: the odd pixel of an even total goes on the high side.
        totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
        return tuple((t // 2, t - t // 2) for t in totals)
    pads = _tuple(padding, n, "padding")
    if any(p < 0 for p in pads):
        raise ValueError(f"`padding` (={padding}) must be non-negative")
    return tuple((p, p) for p in pads)


def _check_groups(groups, in_channels, out_channels, what="out_channels"):
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"`groups` (={groups}) must be a positive int")
    if in_channels % groups:
        raise ValueError(f"`groups` (={groups}) must divide in_channels (={in_channels})")
    if out_channels % groups:
        raise ValueError(f"`groups` (={groups}) must divide {what} (={out_channels})")


def _batched(input, n: int):
    """`(input with a batch axis, whether one was added)`; torch accepts unbatched inputs."""
    if input.dim() not in (n + 1, n + 2):
        raise ValueError(f"`input` (shape {tuple(input.shape)}) must have {n + 1} or {n + 2} dims")
    return (input, False) if input.dim() == n + 2 else (input.unsqueeze(0), True)


def _conv_args(input, weight, bias, stride, padding, dilation, groups, n):
    """Checked arguments for `ConvFunction.apply`, and whether to drop the added batch axis."""
    x, unbatched = _batched(input, n)
    if weight.dim() != n + 2:
        raise ValueError(f"`weight` (shape {tuple(weight.shape)}) must have {n + 2} dims")
    stride, dilation = _positive(stride, n, "stride"), _positive(dilation, n, "dilation")
    _check_groups(groups, weight.shape[1] * groups, weight.shape[0])
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"`input` channels (shape {tuple(input.shape)}) must be `weight`'s in_channels/groups "
            f"(shape {tuple(weight.shape)}) times `groups` (={groups})"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"`bias` (shape {tuple(bias.shape)}) must have shape ({weight.shape[0]},)")
    pads = _pads(padding, tuple(weight.shape[2:]), stride, dilation)
    return (x, weight, bias, stride, pads, dilation, groups), unbatched


def _convnd(function, n, input, weight, bias, stride, padding, dilation, groups):
    args, unbatched = _conv_args(input, weight, bias, stride, padding, dilation, groups, n)
    out = function.apply(*args)
    return out.squeeze(0) if unbatched else out


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.conv1d`.

    Args:
        input: `(N, C_in, L)` or unbatched `(C_in, L)`.
        weight: `(C_out, C_in / groups, K)`.
        bias: `(C_out,)` or None.
        padding: an int, a 1-tuple, "valid" or "same".

    Returns:
        `(N, C_out, L_out)` (or `(C_out, L_out)`).
    """
    return _convnd(ConvFunction, 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.conv2d`.

    Args:
        input: `(N, C_in, H, W)` or unbatched `(C_in, H, W)`.
        weight: `(C_out, C_in / groups, kH, kW)`.
        bias: `(C_out,)` or None.
        padding: an int, a pair, "valid" or "same".

    Returns:
        `(N, C_out, H_out, W_out)` (or without `N`).
    """
    return _convnd(ConvFunction, 2, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose2d_args(input, weight, bias, stride, padding, output_padding, groups, dilation):
    x, unbatched = _batched(input, 2)
    if weight.dim() != 4:
        raise ValueError(f"`weight` (shape {tuple(weight.shape)}) must have 4 dims")
    stride, dilation = _positive(stride, 2, "stride"), _positive(dilation, 2, "dilation")
    padding, output_padding = _tuple(padding, 2, "padding"), _tuple(output_padding, 2, "output_padding")
    if any(p < 0 for p in padding):
        raise ValueError(f"`padding` (={padding}) must be non-negative")
    if any(not 0 <= o < max(s, d) for o, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"`output_padding` (={output_padding}) must be non-negative and below `stride` (={stride}) "
            f"or `dilation` (={dilation})"
        )
    _check_groups(groups, weight.shape[0], weight.shape[1] * groups)
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"`input` channels (shape {tuple(input.shape)}) must be `weight`'s dim 0 (shape {tuple(weight.shape)})"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[1] * groups,):
        raise ValueError(f"`bias` (shape {tuple(bias.shape)}) must have shape ({weight.shape[1] * groups},)")
    return (x, weight, bias, stride, padding, output_padding, groups, dilation), unbatched


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Drop-in for `torch.nn.functional.conv_transpose2d`.

    Args:
        input: `(N, C_in, H, W)` or unbatched `(C_in, H, W)`.
        weight: `(C_in, C_out / groups, kH, kW)`.
        bias: `(C_out,)` or None.

    Returns:
        `(N, C_out, H_out, W_out)` with `H_out = (H - 1) stride - 2 padding + dilation (kH - 1)
        + output_padding + 1` (or without `N`).
    """
    args, unbatched = _conv_transpose2d_args(input, weight, bias, stride, padding, output_padding, groups, dilation)
    out = ConvTranspose2dFunction.apply(*args)
    return out.squeeze(0) if unbatched else out


class _ConvNd(nn.Module):
    """torch.nn's `_ConvNd`: same attributes, parameter shapes and init draws."""

    n: int = 2
    transposed: bool = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding,
                 groups, bias, padding_mode, device, dtype):
        super().__init__()
        if padding_mode != "zeros" and (self.transposed or padding_mode not in MODES):
            allowed = "'zeros' for a transposed convolution" if self.transposed else (
                "'zeros' or one of " + ", ".join(map(repr, MODES)))
            raise ValueError(f"`padding_mode` (={padding_mode!r}) must be {allowed}")
        n = self.n
        self.kernel_size = _positive(kernel_size, n, "kernel_size")
        self.stride, self.dilation = _positive(stride, n, "stride"), _positive(dilation, n, "dilation")
        _check_groups(groups, in_channels, out_channels)
        if self.transposed and isinstance(padding, str):
            raise ValueError(f"`padding` (={padding!r}) must be an int or {n} ints")
        _pads(padding, self.kernel_size, self.stride, self.dilation)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, n, "padding")
        self.output_padding = _tuple(output_padding, n, "output_padding")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.groups, self.padding_mode = groups, padding_mode
        shape = (in_channels, out_channels // groups) if self.transposed else (out_channels, in_channels // groups)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((*shape, *self.kernel_size), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same draws, in the same order, as torch.nn's _ConvNd.reset_parameters.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def _forward(self, function, input: torch.Tensor) -> torch.Tensor:
        """`function` (conv1d, conv2d) of `input`, padded first by `padding_mode` as torch.nn does."""
        if self.padding_mode == "zeros":
            return function(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        padded = pad(input, _pads(self.padding, self.kernel_size, self.stride, self.dilation), self.padding_mode)
        return function(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self.n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self.n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        s += "" if self.bias is not None else ", bias=False"
        return s + ("" if self.padding_mode == "zeros" else f", padding_mode={self.padding_mode}")


class Conv1d(_ConvNd):
    """Drop-in for `torch.nn.Conv1d`: `weight (out, in/groups, K)`, `bias (out,)`, same init."""

    n = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 0, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._forward(conv1d, input)


class Conv2d(_ConvNd):
    """Drop-in for `torch.nn.Conv2d`: `weight (out, in/groups, kH, kW)`, `bias (out,)`, same init."""

    n = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 0, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._forward(conv2d, input)


class ConvTranspose2d(_ConvNd):
    """Drop-in for `torch.nn.ConvTranspose2d`: `weight (in, out/groups, kH, kW)`, `bias (out,)`."""

    n = 2
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, output_padding, groups,
                         bias, padding_mode, device, dtype)

    def _output_padding(self, input, output_size):
        if output_size is None:
            return self.output_padding
        spatial = input.shape[-2:]
        output_size = tuple(output_size)[-2:]
        low = [(h - 1) * s - 2 * p + d * (k - 1) + 1 for h, s, p, d, k in
               zip(spatial, self.stride, self.padding, self.dilation, self.kernel_size)]
        if len(output_size) != 2 or any(not lo <= o < lo + s for o, lo, s in zip(output_size, low, self.stride)):
            high = [lo + s - 1 for lo, s in zip(low, self.stride)]
            raise ValueError(f"`output_size` (={output_size}) must lie between {low} and {high}")
        return tuple(o - lo for o, lo in zip(output_size, low))

    def forward(self, input: torch.Tensor, output_size=None) -> torch.Tensor:
        output_padding = self._output_padding(input, output_size)
        return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                self.groups, self.dilation)
