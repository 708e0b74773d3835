"""Planted bugs in the convolutions' backward passes."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _config(case, side):
    """The registered (declared) case's static arguments on `side`."""
    from ..registry import get

    return dict(get(case).config)[side]


def _torch_conv(case, backward):
    from torch_layers import conv as C

    cls = torch_with_backward(C.ConvFunction, backward)
    n = 1 if case.startswith("conv1d") else 2
    return lambda x, w, b=None: C._convnd(cls, n, x, w, b, *_config(case, "torch"))


def _jax_conv(case, bwd):
    L = importlib.import_module("jax_layers.conv")

    f = jax_with_bwd(L._conv, L._conv_fwd, bwd, nondiff_argnums=(0, 1, 2, 3, 4, 5))
    return lambda x, k, b=None: L._conv_call(f, x, k, b, *_config(case, "jax"), None)


def weight_grad_flipped():
    from torch_layers.conv import ConvFunction

    def backward(ctx, g):
        gi, gw, gb, *rest = ConvFunction.backward(ctx, g)
        # Convolution and correlation confused: the kernel gradient comes out reversed in space.
        return (gi, None if gw is None else gw.flip(-2, -1), gb, *rest)

    return _torch_conv("conv2d", backward)


def input_grad_without_output_padding():
    import torch.nn.functional as F

    from torch_layers.conv import ConvFunction

    def backward(ctx, g):
        input, weight = ctx.saved_tensors
        stride, pads, dilation, groups = ctx.config
        _, gw, gb, *rest = ConvFunction.backward(ctx, g)
        # Forgets the input columns that the stride skipped: one column short at W = 5.
        gi = F.conv_transpose2d(g, weight, None, stride, tuple(lo for lo, _ in pads), 0, groups, dilation)
        return (gi, gw, gb, *rest)

    return _torch_conv("conv2d", backward)


def transpose_weight_grad_stride_dilation_unswapped():
    from torch_layers import conv as C

    def backward(ctx, g):
        input, weight = ctx.saved_tensors
        stride, padding, groups, dilation = ctx.config
        gi, _, gb, *rest = C.ConvTranspose2dFunction.backward(ctx, g)
        pads = tuple((p, p) for p in padding)
        # `_correlate` trades stride and dilation itself; trading them here too undoes it.
        gw = C._correlate(g, input, weight.shape[2:], dilation, pads, stride, groups)
        return (gi, gw, gb, *rest)

    cls = torch_with_backward(C.ConvTranspose2dFunction, backward)
    args = _config("conv_transpose2d", "torch")
    return lambda x, w, b=None: cls.apply(*C._conv_transpose2d_args(x, w, b, *args)[0])


def jax_input_grad_kernel_not_reversed():
    from jax import lax

    L = importlib.import_module("jax_layers.conv")

    def bwd(*args):
        *config, (x, kernel, bias), g = args
        # Reversing an already reversed kernel: the input gradient correlates with the kernel.
        flipped = lax.rev(kernel, tuple(range(kernel.ndim - 2)))
        gx, _, _ = L._conv_bwd(*config, (x, flipped, bias), g)
        _, gk, gb = L._conv_bwd(*config, (x, kernel, bias), g)
        return gx, gk, gb

    return _jax_conv("conv1d", bwd)


def jax_kernel_grad_groups_interleaved():
    L = importlib.import_module("jax_layers.conv")

    def bwd(*args):
        *config, (x, kernel, bias), g = args
        gx, _, gb = L._conv_bwd(*config, (x, kernel, bias), g)
        groups = config[4]
        # Channels split as (channel, group) instead of (group, channel): a wrong-axis reshape.
        cin = x.shape[-1]
        shuffled = x.reshape(*x.shape[:-1], cin // groups, groups).swapaxes(-1, -2).reshape(x.shape)
        gk = L.conv_kernel_grad(*config, shuffled, g, kernel.shape)
        return gx, gk, gb

    return _jax_conv("conv2d-groups2", bwd)


def _torch_padded(case, backward):
    """The case's torch function, its `PadFunction` given `backward`."""
    from torch_layers import conv as C
    from torch_layers._pad import PadFunction

    cls = torch_with_backward(PadFunction, backward)
    pad = _config(case, "pad")
    n = len(pad["torch"])
    op = {1: C.conv1d, 2: C.conv2d}[n]
    return lambda x, w, b=None: op(cls.apply(x, pad["torch"], pad["mode"]), w, b, *_config(case, "torch"))


def _jax_padded(case, bwd):
    """The case's JAX function, its padding's VJP `bwd`."""
    L = importlib.import_module("jax_layers.conv")
    P = importlib.import_module("jax_layers._pad")

    f = jax_with_bwd(P._pad, P._pad_fwd, bwd, nondiff_argnums=(0, 1))
    pad = _config(case, "pad")
    return lambda x, k, b=None: L.conv(f(pad["jax"], pad["mode"], x), k, b, *_config(case, "jax"))


def pad_grad_copied_not_added():
    from torch_layers._pad import source

    def backward(ctx, g):
        for d, (lo, hi) in reversed(list(zip(range(-len(ctx.pads), 0), ctx.pads))):
            shape = list(g.shape)
            shape[d] = ctx.shape[d]
            # index_copy for index_add: an edge row copied three times keeps one copy's gradient.
            g = g.new_zeros(shape).index_copy(d, source(ctx.shape[d], lo, hi, ctx.mode, g.device), g)
        return g, None, None

    return _torch_padded("conv2d-replicate", backward)


def _jax_pad_bwd_with(source):
    """`_pad_bwd` scattering through `source(n, lo, hi, mode)` in place of the padding's own."""
    P = importlib.import_module("jax_layers._pad")
    return lambda pads, mode, res, g: (P._gathered_sum(pads, mode, g, source),)


def jax_reflect_grad_edge_repeated():
    import numpy as np

    def symmetric(n, lo, hi, mode):
        # numpy's "symmetric" for "reflect": a mirror that repeats the edge row, one row off.
        i = np.arange(-lo, n + hi)
        return np.where(i < 0, -i - 1, np.where(i >= n, 2 * n - 1 - i, i))

    return _jax_padded("conv2d-reflect", _jax_pad_bwd_with(symmetric))


def jax_circular_grad_wrapped_dropped():
    import numpy as np

    def interior(n, lo, hi, mode):
        # The wrapped copies sent out of range, where `.at[].add` drops them: a zero padding's
        # gradient.
        i = np.arange(-lo, n + hi)
        return np.where((i >= 0) & (i < n), i, n)

    return _jax_padded("conv2d-circular", _jax_pad_bwd_with(interior))


for _name, _case, _side, _make, _expect, _desc in [
    ("weight-grad-flipped", "conv2d", "torch", weight_grad_flipped, VALUES,
     "weight gradient reversed in space (correlation and convolution confused)"),
    ("input-grad-no-output-padding", "conv2d", "torch", input_grad_without_output_padding,
     ("grad-shape", "grad-contract") + VALUES, "input gradient drops the columns the stride skipped"),
    ("transpose-weight-grad-stride-dilation", "conv_transpose2d", "torch",
     transpose_weight_grad_stride_dilation_unswapped, VALUES,
     "transposed conv weight gradient with stride and dilation not traded"),
    ("input-grad-kernel-not-reversed", "conv1d", "jax", jax_input_grad_kernel_not_reversed, VALUES,
     "input gradient uses the kernel unreversed in space"),
    ("kernel-grad-groups-interleaved", "conv2d-groups2", "jax", jax_kernel_grad_groups_interleaved, VALUES,
     "kernel gradient reads the input's channels with groups interleaved"),
    ("pad-grad-copied-not-added", "conv2d-replicate", "torch", pad_grad_copied_not_added, VALUES,
     "padding gradient overwrites, not sums, the copies of an edge row"),
    ("reflect-grad-edge-repeated", "conv2d-reflect", "jax", jax_reflect_grad_edge_repeated, VALUES,
     "reflect padding's gradient goes where a mirror that repeats the edge row would have read"),
    ("circular-grad-wrapped-dropped", "conv2d-circular", "jax", jax_circular_grad_wrapped_dropped, VALUES,
     "circular padding's gradient drops the wrapped copies (a zero padding's gradient)"),
]:
    register_mutant(Mutant(f"conv/{_name}", _case, _side, _make(), _expect, _desc))
