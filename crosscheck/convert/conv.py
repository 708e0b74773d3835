"""torch.nn convolutions <-> flax.nnx.Conv / flax.nnx.ConvTranspose.

Conv weights move by a permutation: `(out, in/groups, *k)` -> `(*k, in/groups, out)`.
A transposed convolution's weight `(in, out, kH, kW)` also moves by a permutation, to
`(kH, kW, in, out)`, but it must be reversed in space as well: torch's transposed convolution
is the gradient of a forward convolution with that weight (a full convolution), Flax's
(`lax.conv_transpose`, `transpose_kernel=False`) a plain correlation of the dilated input.
With `transpose_kernel=True`, Flax reverses it itself and wants `(kH, kW, out, in)`.

Padding is no parameter, but it differs too: torch pads the dilated input with
`dilation * (k - 1) - padding` on each side, plus `output_padding` at the end; Flax takes that
padding as given. `conv_transpose_padding` converts, `nnx_conv_transpose_kwargs` builds the
whole Flax configuration of a torch module.
"""

from __future__ import annotations

import numpy as np

from ..layout import IDENTITY, Layout, permute
from ._core import ParamMap, per_tensor, register_param_map

CONV1D_WEIGHT = permute(2, 1, 0)
CONV2D_WEIGHT = permute(2, 3, 1, 0)
"""`(out, in/groups, kH, kW)` -> `(kH, kW, in/groups, out)`; also NCHW -> NHWC is `permute(0, 2, 3, 1)`."""

_IOHW_TO_HWIO = permute(2, 3, 0, 1)


def _flip(a):
    # The two spatial axes, after the trial axis; a copy, as torch takes no negative strides.
    return np.ascontiguousarray(np.flip(a, axis=(1, 2)))


def _flipped_to_jax(a):
    return _flip(_IOHW_TO_HWIO.to_jax(a))


def _flipped_from_jax(a):
    return _IOHW_TO_HWIO.from_jax(_flip(a))


CONV_TRANSPOSE2D_WEIGHT = Layout("permute(2, 3, 0, 1) + flip(0, 1)", _flipped_to_jax, _flipped_from_jax)
"""torch `(in, out, kH, kW)` -> Flax `(kH, kW, in, out)` reversed in space (`transpose_kernel=False`)."""

CONV_TRANSPOSE2D_WEIGHT_TRANSPOSED = permute(2, 3, 1, 0)
"""torch `(in, out, kH, kW)` -> Flax `(kH, kW, out, in)`, unreversed (`transpose_kernel=True`)."""


def _conv_map(weight_layout: Layout) -> ParamMap:
    return per_tensor(("weight", "kernel", weight_layout), ("bias", "bias", IDENTITY))


@register_param_map("Conv1d")
def conv1d(module):
    return _conv_map(CONV1D_WEIGHT)


@register_param_map("Conv2d")
def conv2d(module):
    return _conv_map(CONV2D_WEIGHT)


def conv_transpose2d_map(transpose_kernel: bool = False) -> ParamMap:
    """The weight map for a `flax.nnx.ConvTranspose` built with `transpose_kernel`."""
    return _conv_map(CONV_TRANSPOSE2D_WEIGHT_TRANSPOSED if transpose_kernel else CONV_TRANSPOSE2D_WEIGHT)


@register_param_map("ConvTranspose2d")
def conv_transpose2d(module, nnx_module=None):
    if getattr(module, "groups", 1) != 1:
        raise ValueError(f"`groups` (={module.groups}) must be 1: flax.nnx.ConvTranspose has no feature groups")
    return conv_transpose2d_map(bool(getattr(nnx_module, "transpose_kernel", False)))


def conv_transpose_padding(kernel_size, padding, output_padding, dilation) -> tuple[tuple[int, int], ...]:
    """torch's `padding`/`output_padding` as Flax's explicit `(lo, hi)` pairs, per spatial dim."""
    return tuple(
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, p, op, d in zip(kernel_size, padding, output_padding, dilation)
    )


def nnx_conv_transpose_kwargs(module, output_padding=None) -> dict:
    """`flax.nnx.ConvTranspose(**kwargs, rngs=...)` computing what torch `module` computes."""
    if module.groups != 1:
        raise ValueError(f"`groups` (={module.groups}) must be 1: flax.nnx.ConvTranspose has no feature groups")
    op = module.output_padding if output_padding is None else output_padding
    return dict(
        in_features=module.in_channels,
        out_features=module.out_channels,
        kernel_size=tuple(module.kernel_size),
        strides=tuple(module.stride),
        padding=conv_transpose_padding(module.kernel_size, module.padding, op, module.dilation),
        kernel_dilation=tuple(module.dilation),
        use_bias=module.bias is not None,
    )


def nnx_conv_kwargs(module) -> dict:
    """`flax.nnx.Conv(**kwargs, rngs=...)` computing what torch Conv1d/Conv2d `module` computes."""
    if module.padding_mode != "zeros":
        raise ValueError(f"`padding_mode` (={module.padding_mode!r}) must be 'zeros'")
    padding = module.padding
    if isinstance(padding, str):
        # torch's "same" puts the odd pixel high, as Flax's SAME does at stride 1.
        padding = padding.upper()
    else:
        padding = tuple((p, p) for p in padding)
    return dict(
        in_features=module.in_channels,
        out_features=module.out_channels,
        kernel_size=tuple(module.kernel_size),
        strides=tuple(module.stride),
        padding=padding,
        kernel_dilation=tuple(module.dilation),
        feature_group_count=module.groups,
        use_bias=module.bias is not None,
    )
