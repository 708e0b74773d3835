"""Cases for convolutions: torch NC(H)W with OI(H)W weights <-> Flax N(H)WC with (H)WIO kernels.

Padding modes (reflect, replicate, circular) pad the input first, as torch.nn.Conv2d does,
through each side's `_pad` with its own backward, then convolve without padding.

A transposed convolution's weight `(in, out, kH, kW)` also flips in space on its way to Flax,
and torch's `padding`/`output_padding` become explicit Flax pairs (see `convert/conv.py`).
"""

from __future__ import annotations

import functools
import importlib
import itertools

from ..convert.conv import (
    CONV1D_WEIGHT,
    CONV2D_WEIGHT,
    CONV_TRANSPOSE2D_WEIGHT,
    conv1d as conv1d_map,
    conv2d as conv2d_map,
    conv_transpose2d as conv_transpose2d_map,
    conv_transpose_padding,
)
from ..layout import channels_last
from ..registry import Case, Tensor, register



def _ints(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _jax_padding(padding, n):
    return padding.upper() if isinstance(padding, str) else tuple((p, p) for p in _ints(padding, n))


# The cases' functions are module-level, their options bound by `functools.partial` in the
# `_..._case` builders: they then pickle by reference, which closures do not. `op` and `cls`
# name a function or module class of torch_layers.conv / jax_layers.conv (and torch.nn.functional).


def user_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                              dimension_numbers=None, feature_group_count=1, precision=None,
                              preferred_element_type=None):
    """A user's `conv_general_dilated` as flax.nnx.Conv takes one (a wrapper, as for counting or
    quantizing)."""
    from jax import lax

    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count=feature_group_count,
                                    precision=precision, preferred_element_type=preferred_element_type)


def _nnx_options(nnx_options, module):
    """With `nnx_options`, the flax.nnx.Conv arguments of `_nnx_options_case` (the module's or,
    without `module`, the function's: no promote_dtype or metadata); else none."""
    if not nnx_options:
        return {}
    from flax import nnx
    from jax import lax

    options = {"precision": lax.Precision.HIGHEST, "conv_general_dilated": user_conv_general_dilated}
    if module:
        options.update(promote_dtype=nnx.nn.dtypes.promote_dtype, kernel_metadata={"note": "kernel"},
                       bias_metadata={"note": "bias"})
    return options


def _conv_torch(x, weight, bias=None, *, op, args):
    from torch_layers import conv

    return getattr(conv, op)(x, weight, bias, *args)


def _conv_torch_ref(x, weight, bias=None, *, op, args):
    import warnings

    import torch.nn.functional as F

    with warnings.catch_warnings():
        # "same" with an even kernel: torch warns that it pads a copy of the input.
        warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
        return getattr(F, op)(x, weight, bias, *args)


def _jax_conv_layers():
    """The module jax_layers.conv (the package's own `conv` is the function)."""
    return importlib.import_module("jax_layers.conv")


def _conv_jax(x, kernel, bias=None, *, op, args, nnx_options=False):
    return getattr(_jax_conv_layers(), op)(x, kernel, bias, *args, **_nnx_options(nnx_options, module=False))


def _conv_jax_ref(x, kernel, bias=None, *, strides, padding, dilations, groups=1, transpose=False):
    from jax import lax

    n = len(strides)
    unbatched = x.ndim == n + 1
    spec = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC")}[n]
    x = x[None] if unbatched else x
    if transpose:
        y = lax.conv_transpose(x, kernel, strides, padding, dilations, spec)
    else:
        y = lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilations, dimension_numbers=spec,
                                     feature_group_count=groups)
    y = y[0] if unbatched else y
    return y if bias is None else y + bias


def _conv_torch_module(dtype, device, *, cls, args, **options):
    from torch_layers import conv

    return getattr(conv, cls)(*args, **options, dtype=dtype, device=device)


def _conv_jax_module(dtype, *, cls, args, nnx_options=False, **options):
    from flax import nnx

    return getattr(_jax_conv_layers(), cls)(*args, **options, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0),
                                            **_nnx_options(nnx_options, module=True))


def _conv_case(name, x_shape, w_shape, *, bias=True, stride=1, padding=0, dilation=1, groups=1):
    n = len(w_shape) - 2
    c_out, c_in = w_shape[0], w_shape[1] * groups
    kernel, strides, dilations = w_shape[2:], _ints(stride, n), _ints(dilation, n)
    jax_padding = _jax_padding(padding, n)
    op = {1: "conv1d", 2: "conv2d"}[n]
    torch_args, jax_args = (stride, padding, dilation, groups), (strides, jax_padding, 1, dilations, groups)
    layout = channels_last(n, len(x_shape) == n + 2)
    weight = Tensor("weight", w_shape, layout={1: CONV1D_WEIGHT, 2: CONV2D_WEIGHT}[n], jax_name="kernel")
    params = (weight, Tensor("bias", (c_out,), jax_name="bias")) if bias else (weight,)
    return Case(
        name=name,
        family="conv",
        inputs=(Tensor("input", x_shape, layout=layout),),
        params=params,
        torch_fn=functools.partial(_conv_torch, op=op, args=torch_args),
        torch_ref=functools.partial(_conv_torch_ref, op=op, args=torch_args),
        jax_fn=functools.partial(_conv_jax, op="conv", args=jax_args),
        jax_ref=functools.partial(_conv_jax_ref, strides=strides, padding=jax_padding, dilations=dilations,
                                  groups=groups),
        torch_module=functools.partial(_conv_torch_module, cls={1: "Conv1d", 2: "Conv2d"}[n],
                                       args=(c_in, c_out, kernel, stride, padding, dilation, groups, bias)),
        jax_module=functools.partial(_conv_jax_module, cls="Conv", args=(c_in, c_out, kernel, strides),
                                     padding=jax_padding, kernel_dilation=dilations, feature_group_count=groups,
                                     use_bias=bias),
        out_layouts=(layout,),
        param_map={1: conv1d_map, 2: conv2d_map}[n](None),
        config=(("torch", torch_args), ("jax", jax_args)),
        description=f"x {x_shape}, w {w_shape}, stride={stride}, padding={padding!r}, dilation={dilation}, "
        f"groups={groups}, bias={bias}",
    )


def _conv_transpose_case(name, x_shape, w_shape, *, bias=True, stride=1, padding=0, output_padding=0, dilation=1):
    c_in, c_out, kernel = w_shape[0], w_shape[1], w_shape[2:]
    strides, dilations = _ints(stride, 2), _ints(dilation, 2)
    pads = conv_transpose_padding(kernel, _ints(padding, 2), _ints(output_padding, 2), dilations)
    torch_args, jax_args = (stride, padding, output_padding, 1, dilation), (strides, pads, dilations)
    layout = channels_last(2, len(x_shape) == 4)
    weight = Tensor("weight", w_shape, layout=CONV_TRANSPOSE2D_WEIGHT, jax_name="kernel")
    params = (weight, Tensor("bias", (c_out,), jax_name="bias")) if bias else (weight,)
    return Case(
        name=name,
        family="conv",
        inputs=(Tensor("input", x_shape, layout=layout),),
        params=params,
        torch_fn=functools.partial(_conv_torch, op="conv_transpose2d", args=torch_args),
        torch_ref=functools.partial(_conv_torch_ref, op="conv_transpose2d", args=torch_args),
        jax_fn=functools.partial(_conv_jax, op="conv_transpose", args=jax_args),
        jax_ref=functools.partial(_conv_jax_ref, strides=strides, padding=pads, dilations=dilations, transpose=True),
        torch_module=functools.partial(_conv_torch_module, cls="ConvTranspose2d",
                                       args=(c_in, c_out, kernel, stride, padding, output_padding, 1, bias, dilation)),
        jax_module=functools.partial(_conv_jax_module, cls="ConvTranspose", args=(c_in, c_out, kernel, strides),
                                     padding=pads, kernel_dilation=dilations, use_bias=bias),
        out_layouts=(layout,),
        param_map=conv_transpose2d_map(None),
        config=(("torch", torch_args), ("jax", jax_args)),
        description=f"x {x_shape}, w {w_shape}, stride={stride}, padding={padding}, "
        f"output_padding={output_padding}, dilation={dilation}, bias={bias} (Flax padding {pads})",
    )


# torch's padding_mode -> jnp.pad's mode, and Flax's padding string where nnx.Conv has one.
JNP_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
FLAX_MODES = {"reflect": "REFLECT", "circular": "CIRCULAR"}


# A padding mode's functions: `conv` (the unpadded case's function) of the input padded by
# `mode`, `pairs` per spatial side (torch) or `pads` per axis (JAX, channels last).


def _padded_torch(x, weight, bias=None, *, pairs, mode, conv):
    from torch_layers._pad import pad

    return conv(pad(x, pairs, mode), weight, bias)


def _padded_torch_ref(x, weight, bias=None, *, pairs, mode, conv):
    import torch.nn.functional as F

    flat = [p for pair in reversed(pairs) for p in pair]
    return conv(F.pad(x, flat, mode=mode), weight, bias)


def _padded_jax(x, kernel, bias=None, *, pads, mode, conv):
    from jax_layers._pad import pad

    return conv(pad(x, pads, mode), kernel, bias)


def _padded_jax_ref(x, kernel, bias=None, *, pads, mode, conv):
    import jax.numpy as jnp

    return conv(jnp.pad(x, pads, mode=JNP_MODES[mode]), kernel, bias)


def _padding_mode_case(name, x_shape, w_shape, *, mode, padding, stride=1, dilation=1, groups=1, bias=True):
    """`torch.nn.Conv2d(..., padding_mode=mode)` (or Conv1d): the input padded by `mode`, then a
    convolution without padding. The NNX module is `nnx.Conv(padding="REFLECT")` (or
    "CIRCULAR") where Flax pads the same, `(dk - 1) // 2` low and `dk // 2` high."""
    n = len(w_shape) - 2
    pairs = tuple((p, p) for p in _ints(padding, n))
    strides, dilations = _ints(stride, n), _ints(dilation, n)
    case = _conv_case(name, x_shape, w_shape, bias=bias, stride=stride, padding=0, dilation=dilation, groups=groups)
    # Channels last: the batch axis (if any), the spatial ones, the channels.
    jax_pads = ((0, 0),) * (len(x_shape) - n - 1) + pairs + ((0, 0),)
    # The convolution's arguments are `_conv_case`'s (no padding); the pads join them, for the
    # mutants that rebuild the padded call (mutants/conv.py).
    config = case.config + (("pad", {"torch": pairs, "jax": jax_pads, "mode": mode}),)
    sizes = (x_shape[-n - 1], w_shape[0], w_shape[2:])
    dk = [d * (k - 1) + 1 for d, k in zip(dilations, w_shape[2:])]
    flax_pads = tuple(((k - 1) // 2, k // 2) for k in dk)
    jax_module = None
    if mode in FLAX_MODES and flax_pads == pairs:
        jax_module = functools.partial(_conv_jax_module, cls="Conv", args=(*sizes, strides),
                                       padding=FLAX_MODES[mode], kernel_dilation=dilations,
                                       feature_group_count=groups, use_bias=bias)
    return case.replace(
        torch_fn=functools.partial(_padded_torch, pairs=pairs, mode=mode, conv=case.torch_fn),
        torch_ref=functools.partial(_padded_torch_ref, pairs=pairs, mode=mode, conv=case.torch_ref),
        jax_fn=functools.partial(_padded_jax, pads=jax_pads, mode=mode, conv=case.jax_fn),
        jax_ref=functools.partial(_padded_jax_ref, pads=jax_pads, mode=mode, conv=case.jax_ref),
        torch_module=functools.partial(_conv_torch_module, cls={1: "Conv1d", 2: "Conv2d"}[n],
                                       args=(*sizes, stride, padding, dilation, groups, bias), padding_mode=mode),
        jax_module=jax_module, config=config,
        description=f"{case.description.replace('padding=0', f'padding={padding!r}')}, padding_mode={mode!r}",
    )


def _nnx_options_case(name, x_shape, w_shape, **options):
    """`_conv_case` whose JAX function and module take flax.nnx.Conv's own arguments: a
    precision and a user's conv_general_dilated (which the gradients' convolutions must run
    through too), promote_dtype and parameter metadata."""
    case = _conv_case(name, x_shape, w_shape, **options)
    # The plain case's partials, given one more keyword.
    return case.replace(jax_fn=functools.partial(case.jax_fn, nnx_options=True),
                        jax_module=functools.partial(case.jax_module, nnx_options=True),
                        description=case.description + ", nnx precision/conv_general_dilated/promote_dtype/metadata")


def _grid(values, n):
    return tuple(itertools.product(values, repeat=n))


def _lead(batch):
    return () if batch is None else (batch,)


def _conv_bucket(name, bias, *, batch, kernel, stride, padding, dilation, groups, in_per_group, out_per_group, excess,
                 make=_conv_case):
    """A convolution whose input runs `excess` positions past the dilated kernel, per side."""
    sides = [d * (k - 1) + 1 + x for k, d, x in zip(kernel, _ints(dilation, len(kernel)), excess)]
    x_shape, w_shape = (*_lead(batch), groups * in_per_group, *sides), (groups * out_per_group, in_per_group, *kernel)
    return make(name, x_shape, w_shape, bias=bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv_transpose_bucket(name, bias, *, batch, kernel, stride, padding, dilation, in_channels, out_channels, size,
                           output_padding):
    """A transposed convolution, capping what torch refuses: `output_padding` below
    `max(stride, dilation)` and `padding` low enough to leave an output. Padding above
    `dilation * (kernel - 1)` crops: Flax's padding goes negative."""
    stride, dilation, padding = _ints(stride, 2), _ints(dilation, 2), _ints(padding, 2)
    output_padding = tuple(min(o, max(s, d) - 1) for o, s, d in zip(output_padding, stride, dilation))
    # torch's output side: (size - 1) stride + dilation (kernel - 1) - 2 padding + output_padding + 1.
    padding = tuple(min(p, ((i - 1) * s + d * (k - 1) + o) // 2)
                    for p, k, d, i, s, o in zip(padding, kernel, dilation, size, stride, output_padding))
    x_shape, w_shape = (*_lead(batch), in_channels, *size), (in_channels, out_channels, *kernel)
    return _conv_transpose_case(name, x_shape, w_shape, bias=bias, stride=stride, padding=padding,
                                output_padding=output_padding, dilation=dilation)


def _padding_mode_bucket(name, mode, bias, *, batch, kernel, stride, padding, dilation, groups, in_per_group,
                         out_per_group, excess):
    """`_conv_bucket` with the padding capped where torch refuses it: below the input's size for
    reflect, at most the size for circular."""
    sides = [d * (k - 1) + 1 + x for k, d, x in zip(kernel, _ints(dilation, len(kernel)), excess)]
    cap = {"reflect": -1, "circular": 0, "replicate": 2}[mode]
    padding = tuple(min(p, n + cap) for p, n in zip(padding, sides))
    x_shape, w_shape = (*_lead(batch), groups * in_per_group, *sides), (groups * out_per_group, in_per_group, *kernel)
    return _padding_mode_case(name, x_shape, w_shape, mode=mode, padding=padding, stride=stride, dilation=dilation,
                              groups=groups, bias=bias)


def _register(make, name, x_shape, w_shape, *, narrow=None, **options):
    """The case at its declared shapes, with further shape buckets over batch (none, 1, 2) and,
    per spatial side, kernel (1..3), stride (1..3), padding (0..2) and dilation (1, 2);
    convolutions add groups (1, 2), channels per group (1, 2 in; 1..3 out) and 0..2 input
    positions past the dilated kernel (padding modes: the padding capped as torch asks),
    transposed ones 1..3 / 1..2 channels in / out, 1..3
    input positions and output_padding (0..2). `narrow` holds what the case is about to its
    own values; the bias stays as declared (buckets keep the case's tensors)."""
    n = len(w_shape) - 2
    ranges = dict(batch=(None, 1, 2), kernel=_grid((1, 2, 3), n), stride=_grid((1, 2, 3), n),
                  padding=_grid((0, 1, 2), n), dilation=_grid((1, 2), n))
    bias = options.get("bias", True)
    if make is not _conv_transpose_case:
        build = functools.partial(_conv_bucket, name, bias)
        if make is _nnx_options_case:
            build = functools.partial(_conv_bucket, name, bias, make=_nnx_options_case)
        if make is _padding_mode_case:
            build = functools.partial(_padding_mode_bucket, name, options["mode"], bias)
        ranges.update(groups=(1, 2), in_per_group=(1, 2), out_per_group=(1, 2, 3), excess=_grid((0, 1, 2), n))
    else:
        build = functools.partial(_conv_transpose_bucket, name, bias)
        ranges.update(in_channels=(1, 2, 3), out_channels=(1, 2), size=_grid((1, 2, 3), n),
                      output_padding=_grid((0, 1, 2), n))
    ranges.update(narrow or {})
    register(make(name, x_shape, w_shape, **options), build, ranges)


# Odd sizes, non-square kernels, a size-1 dim in each: a transposed or flipped kernel gradient,
# a dropped trailing row or a missing sum hides in symmetric shapes.
_register(_conv_case, "conv2d", (2, 3, 7, 5), (4, 3, 3, 2), stride=2, padding=1)
_register(_conv_case, "conv2d-same-dilation2", (1, 2, 6, 5), (3, 2, 3, 2), padding="same", dilation=2,
          narrow=dict(padding=("same",), dilation=(2,), stride=(1,)))
_register(_conv_case, "conv2d-groups2", (2, 4, 5, 6), (6, 2, 3, 1), stride=(1, 2), padding=(1, 0), groups=2,
          narrow=dict(groups=(2,)))
_register(_conv_case, "conv2d-valid-nobias", (3, 2, 5, 4), (1, 2, 2, 3), padding="valid", bias=False,
          narrow=dict(padding=("valid",)))
_register(_conv_case, "conv2d-unbatched", (3, 5, 4), (2, 3, 2, 3), stride=(2, 1), padding=(0, 1),
          narrow=dict(batch=(None,)))
_register(_conv_case, "conv1d", (2, 3, 9), (4, 3, 3), stride=2, padding=2)
# An even kernel under "same": torch and Flax both put the odd padding pixel high.
_register(_conv_case, "conv1d-same-groups2", (1, 4, 7), (2, 2, 4), padding="same", groups=2,
          narrow=dict(padding=("same",), groups=(2,), stride=(1,)))
_register(_conv_transpose_case, "conv_transpose2d", (2, 3, 4, 3), (3, 2, 3, 2), stride=2, padding=1, output_padding=1)
_register(_conv_transpose_case, "conv_transpose2d-dilation2-nobias", (1, 2, 3, 4), (2, 3, 2, 3), stride=(1, 2),
          padding=(0, 1), output_padding=(0, 1), dilation=2, bias=False, narrow=dict(dilation=(2,)))
_register(_conv_transpose_case, "conv_transpose2d-stride3", (2, 1, 3, 2), (1, 4, 2, 3), stride=3, padding=1,
          output_padding=(2, 0), narrow=dict(stride=(3,)))
# Padding modes, as torch.nn.Conv2d(padding_mode=...) pads: every padded row a copy of an input
# row, whose gradient collects them all. Reflect and circular with odd kernels, where nnx.Conv's
# "REFLECT" / "CIRCULAR" pad the same; replicate (no Flax module) with uneven sizes and stride.
_register(_padding_mode_case, "conv2d-reflect", (2, 3, 6, 5), (4, 3, 3, 5), mode="reflect", padding=(1, 2),
          narrow=dict(padding=((1, 2), (2, 1), (1, 1))))
_register(_padding_mode_case, "conv2d-replicate", (2, 2, 5, 4), (3, 2, 2, 3), mode="replicate", padding=(2, 1),
          stride=(2, 1), narrow=dict(padding=((2, 1), (1, 2), (2, 2))))
_register(_padding_mode_case, "conv2d-circular", (1, 4, 5, 7), (2, 2, 3, 3), mode="circular", padding=(2, 1),
          dilation=(2, 1), groups=2, narrow=dict(padding=((2, 1), (1, 2))))
_register(_padding_mode_case, "conv1d-reflect", (3, 2, 6), (3, 2, 5), mode="reflect", padding=2,
          narrow=dict(padding=((1,), (2,))))
_register(_nnx_options_case, "conv2d-nnx-options", (2, 4, 6, 5), (2, 2, 3, 2), stride=(2, 1), padding=1, groups=2)
