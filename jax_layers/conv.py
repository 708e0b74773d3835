"""Convolutions (any number of spatial dims) and transposed convolutions, with hand-written VJPs.

Flax layouts throughout: input `(N, *spatial, C)` (channels last), kernel `(*kernel, in/groups,
out)` (HWIO). Both gradients are `lax.conv_general_dilated` again: the input gradient convolves
the output gradient with the spatially reversed kernel (input and output channels swapped per
group; stride and input dilation trade places), the kernel gradient correlates the input with
the output gradient (the batch axis contracted as if it were channels; stride and kernel
dilation trade places). Padding is always explicit `(lo, hi)` pairs inside the VJP.
"""

from __future__ import annotations

from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes
from jax import lax

from . import _pad
from ._ops import ConvOps, params, refuse_out_sharding, widened

default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()


def _dimension_numbers(nd: int) -> lax.ConvDimensionNumbers:
    """Channels-last input and output, `(*kernel, I, O)` kernel, as Flax uses them."""
    io = (0, nd + 1, *range(1, nd + 1))
    return lax.ConvDimensionNumbers(io, (nd + 1, nd, *range(nd)), io)


def _dilate(sizes, factors):
    return [0 if n == 0 else (n - 1) * f + 1 for n, f in zip(sizes, factors)]


def _conv(strides, padding, input_dilation, kernel_dilation, groups, ops, x, kernel, bias):
    y = ops(x, kernel, strides, padding, input_dilation, kernel_dilation, _dimension_numbers(kernel.ndim - 2),
                  groups)
    return y if bias is None else y + bias


_conv_vjp = jax.custom_vjp(_conv, nondiff_argnums=(0, 1, 2, 3, 4, 5))


def _conv_fwd(strides, padding, input_dilation, kernel_dilation, groups, ops, x, kernel, bias):
    y = _conv(strides, padding, input_dilation, kernel_dilation, groups, ops, x, kernel, bias)
    return y, (x, kernel, bias)


def _transposed_kernel(kernel, groups):
    """`(*k, I/G, O)` -> `(*k, O/G, I)` reversed in space: the kernel of the input gradient."""
    nd = kernel.ndim - 2
    *k, cig, cout = kernel.shape
    # Output channel `g * O/G + o` of group g becomes its input channel `o`, and back.
    t = kernel.reshape(*k, cig, groups, cout // groups)
    t = jnp.moveaxis(t, (nd, nd + 1, nd + 2), (nd + 2, nd + 1, nd)).reshape(*k, cout // groups, groups * cig)
    return lax.rev(t, tuple(range(nd)))


def conv_input_grad(strides, padding, input_dilation, kernel_dilation, groups, ops, g, kernel, in_shape):
    """`dL/dx` of `conv(x, kernel)`: a convolution of `g` with the transposed kernel."""
    nd = kernel.ndim - 2
    k = _dilate(kernel.shape[:nd], kernel_dilation)
    x = _dilate(in_shape[1:-1], input_dilation)
    y = _dilate(g.shape[1:-1], strides)
    # The transposed window reaches `k - 1 - lo` before the first output row, and must cover
    # the dilated input to its last row.
    before = [kk - lo - 1 for kk, (lo, _) in zip(k, padding)]
    after = [xx + kk - 1 - yy - b for xx, kk, yy, b in zip(x, k, y, before)]
    return ops(g, _transposed_kernel(kernel, groups), input_dilation, tuple(zip(before, after)), strides,
                     kernel_dilation, _dimension_numbers(nd), groups)


def conv_kernel_grad(strides, padding, input_dilation, kernel_dilation, groups, ops, x, g, kernel_shape):
    """`dL/dkernel` of `conv(x, kernel)`: `x` correlated with `g`, summed over the batch."""
    nd = len(kernel_shape) - 2
    n, spatial, cin = x.shape[0], x.shape[1:-1], x.shape[-1]
    if n == 0:  # an empty batch: no crosscheck case has one (tests/test_layers_conv.py does)
        return jnp.zeros(kernel_shape, g.dtype)
    cig = cin // groups
    # (N, *s, G * I/G) -> (I/G, *s, G * N): channels become the batch and each group's samples
    # its input features, so the grouped convolution sums over samples within the group.
    xt = jnp.moveaxis(x.reshape(n, *spatial, groups, cig), (0, nd + 2), (nd + 2, 0)).reshape(cig, *spatial, groups * n)
    gt = jnp.moveaxis(g, 0, nd)  # (*out, N, O): the output gradient as the kernel
    k = _dilate(kernel_shape[:nd], kernel_dilation)
    xd = _dilate(spatial, input_dilation)
    y = _dilate(g.shape[1:-1], strides)
    pads = [(lo, yy - xx + kk - lo - 1) for (lo, _), yy, xx, kk in zip(padding, y, xd, k)]
    out = ops(xt, gt, kernel_dilation, pads, input_dilation, strides, _dimension_numbers(nd), groups)
    return jnp.moveaxis(out, 0, nd)  # (I/G, *k, O) -> (*k, I/G, O)


def _conv_bwd(strides, padding, input_dilation, kernel_dilation, groups, ops, res, g):
    x, kernel, bias = res
    config = strides, padding, input_dilation, kernel_dilation, groups, ops
    wide, wide_x, wide_kernel = widened(g, x, kernel)  # the gradients return in the primals' types
    grad_x = conv_input_grad(*config, wide, wide_kernel, x.shape).astype(x.dtype)
    grad_kernel = conv_kernel_grad(*config, wide_x, wide, kernel.shape).astype(kernel.dtype)
    grad_bias = None if bias is None else g.sum(tuple(range(g.ndim - 1))).astype(bias.dtype)
    return grad_x, grad_kernel, grad_bias


_conv_vjp.defvjp(_conv_fwd, _conv_bwd)


def _conv_transpose(strides, padding, kernel_dilation, transpose_kernel, ops, x, kernel, bias):
    """`lax.conv_transpose` with explicit padding: a convolution with input dilation `strides`."""
    k = _flip_swap(kernel) if transpose_kernel else kernel
    return _conv((1,) * len(strides), padding, strides, kernel_dilation, 1, ops, x, k, bias)


_conv_transpose_vjp = jax.custom_vjp(_conv_transpose, nondiff_argnums=(0, 1, 2, 3, 4))


def _flip_swap(kernel):
    """`transpose_kernel`: reverse space and swap I and O; its own inverse."""
    nd = kernel.ndim - 2
    return jnp.swapaxes(lax.rev(kernel, tuple(range(nd))), nd, nd + 1)


def _conv_transpose_fwd(strides, padding, kernel_dilation, transpose_kernel, ops, x, kernel, bias):
    y = _conv_transpose(strides, padding, kernel_dilation, transpose_kernel, ops, x, kernel, bias)
    return y, (x, kernel, bias)


def _conv_transpose_bwd(strides, padding, kernel_dilation, transpose_kernel, ops, res, g):
    x, kernel, bias = res
    k = _flip_swap(kernel) if transpose_kernel else kernel
    grad_x, grad_k, grad_bias = _conv_bwd((1,) * len(strides), padding, strides, kernel_dilation, 1, ops,
                                          (x, k, bias), g)
    return grad_x, _flip_swap(grad_k) if transpose_kernel else grad_k, grad_bias


_conv_transpose_vjp.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def _ints(value, n: int, name: str) -> tuple[int, ...]:
    value = 1 if value is None else value
    t = (value,) * n if isinstance(value, int) else tuple(value)
    if len(t) != n or not all(isinstance(v, int) and v > 0 for v in t):
        raise ValueError(f"`{name}` (={value}) must be a positive int or {n} positive ints")
    return t


def _pairs(padding, n: int) -> tuple[tuple[int, int], ...]:
    """Flax's padding forms (int, ints, `(lo, hi)` pairs) as `n` pairs."""
    if isinstance(padding, int):
        return ((padding, padding),) * n
    if isinstance(padding, (tuple, list)) and len(padding) == n:
        pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
        if all(len(p) == 2 and all(isinstance(v, int) for v in p) for p in pairs):
            return tuple((int(lo), int(hi)) for lo, hi in pairs)
    raise ValueError(f"`padding` (={padding}) must be a string, an int, or {n} ints or (lo, hi) pairs")


def _flatten_batch(x, nd: int):
    """`(x as (N, *spatial, C), a function restoring x's leading dims on an output)`."""
    if x.ndim < nd + 1:
        raise ValueError(f"`x` (shape {x.shape}) must have at least {nd + 1} dims (spatial and features)")
    batch = x.shape[: x.ndim - nd - 1]
    flat = x.reshape(-1, *x.shape[x.ndim - nd - 1:])
    return flat, lambda y: y.reshape(*batch, *y.shape[1:])


def _conv_call(fn, x, kernel, bias, strides, padding, input_dilation, kernel_dilation, feature_group_count, precision,
               preferred_element_type=None, conv_general_dilated=lax.conv_general_dilated):
    """Resolves `conv`'s arguments and runs `fn` (the custom_vjp, or a variant of it)."""
    nd = kernel.ndim - 2
    if nd < 1:
        raise ValueError(f"`kernel` (shape {kernel.shape}) must have at least 3 dims (*kernel, in, out)")
    strides = _ints(strides, nd, "strides")
    input_dilation = _ints(input_dilation, nd, "input_dilation")
    kernel_dilation = _ints(kernel_dilation, nd, "kernel_dilation")
    groups = feature_group_count
    if not isinstance(groups, int) or groups <= 0 or kernel.shape[-1] % groups:
        raise ValueError(
            f"`feature_group_count` (={groups}) must be a positive divisor of out_features (={kernel.shape[-1]})"
        )
    if x.shape[-1] != kernel.shape[-2] * groups:
        raise ValueError(
            f"`x` features (shape {x.shape}) must be `kernel`'s in_features (shape {kernel.shape}) "
            f"times `feature_group_count` (={groups})"
        )
    flat, restore = _flatten_batch(x, nd)
    k = _dilate(kernel.shape[:nd], kernel_dilation)
    if isinstance(padding, str):
        padding = padding.upper()
        if padding in ("CIRCULAR", "REFLECT", "CAUSAL"):
            if padding == "CAUSAL" and nd != 1:
                raise ValueError(f"`padding` (={padding!r}) is only implemented for 1-d convolutions")
            pads = [((kk - 1) // 2, kk // 2) for kk in k] if padding != "CAUSAL" else [(k[0] - 1, 0)]
            if padding == "CAUSAL":
                flat = jnp.pad(flat, [(0, 0), *pads, (0, 0)])
            else:  # copies of the input: the hand-written VJP of `_pad` scatters their gradients back
                flat = _pad.pad(flat, [(0, 0), *pads, (0, 0)], padding.lower())
            padding = "VALID"
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"`padding` (={padding!r}) must be SAME, VALID, CIRCULAR, REFLECT or CAUSAL")
        if any(d != 1 for d in input_dilation):
            raise ValueError(f"`padding` (={padding!r}) needs explicit pairs with `input_dilation` (={input_dilation})")
        pads = tuple(tuple(p) for p in lax.padtype_to_pads(flat.shape[1:-1], k, strides, padding))
    else:
        pads = _pairs(padding, nd)
    if bias is not None and bias.shape != kernel.shape[-1:]:
        raise ValueError(f"`bias` (shape {bias.shape}) must have shape {kernel.shape[-1:]}")
    ops = ConvOps(precision, preferred_element_type, conv_general_dilated)
    return restore(fn(strides, pads, input_dilation, kernel_dilation, groups, ops, flat, kernel, bias))


def conv(x, kernel, bias=None, strides=1, padding="SAME", input_dilation=1, kernel_dilation=1,
         feature_group_count=1, precision=None, *, preferred_element_type=None,
         conv_general_dilated=lax.conv_general_dilated) -> jax.Array:
    """The convolution of `flax.nnx.Conv`, with a hand-written VJP.

    Args:
        x: `(*batch, *spatial, in)`; no batch dims (unbatched) and several are fine.
        kernel: `(*kernel_size, in / feature_group_count, out)`.
        bias: `(out,)` or None.
        padding: "SAME", "VALID", "CIRCULAR", "REFLECT", "CAUSAL" (1-d), an int, or one int or
            `(lo, hi)` pair per spatial dim.
        precision, preferred_element_type, conv_general_dilated: as `flax.nnx.Conv`'s; the
            gradients' convolutions use them too.

    Returns:
        `(*batch, *out_spatial, out)`.
    """
    return _conv_call(_conv_vjp, x, kernel, bias, strides, padding, input_dilation, kernel_dilation,
                      feature_group_count, precision, preferred_element_type, conv_general_dilated)


def conv_transpose_padding(kernel_size, strides, padding, kernel_dilation=None) -> tuple[tuple[int, int], ...]:
    """`lax.conv_transpose`'s padding as explicit `(lo, hi)` pairs ("SAME"/"VALID" resolved)."""
    nd = len(kernel_size)
    strides, kernel_dilation = _ints(strides, nd, "strides"), _ints(kernel_dilation, nd, "kernel_dilation")
    if not isinstance(padding, str):
        return _pairs(padding, nd)
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"`padding` (={padding!r}) must be SAME, VALID, an int or (lo, hi) pairs")
    pads = []
    for k, s in zip(_dilate(kernel_size, kernel_dilation), strides):
        # As lax.conv_transpose: the padding that makes this the transpose of a forward conv.
        if padding == "SAME":
            total, lo = k + s - 2, (k - 1 if s > k - 1 else int(np.ceil((k + s - 2) / 2)))
        else:
            total, lo = k + s - 2 + max(k - s, 0), k - 1
        pads.append((lo, total - lo))
    return tuple(pads)


def _conv_transpose_call(fn, x, kernel, bias, strides, padding, kernel_dilation, transpose_kernel, precision,
                         preferred_element_type=None):
    nd = kernel.ndim - 2
    strides, kernel_dilation = _ints(strides, nd, "strides"), _ints(kernel_dilation, nd, "kernel_dilation")
    cin = kernel.shape[-1] if transpose_kernel else kernel.shape[-2]
    cout = kernel.shape[-2] if transpose_kernel else kernel.shape[-1]
    if x.shape[-1] != cin:
        raise ValueError(f"`x` features (shape {x.shape}) must match `kernel`'s in_features (shape {kernel.shape})")
    if bias is not None and bias.shape != (cout,):
        raise ValueError(f"`bias` (shape {bias.shape}) must have shape ({cout},)")
    pads = conv_transpose_padding(kernel.shape[:nd], strides, padding, kernel_dilation)
    flat, restore = _flatten_batch(x, nd)
    ops = ConvOps(precision, preferred_element_type)
    return restore(fn(strides, pads, kernel_dilation, transpose_kernel, ops, flat, kernel, bias))


def conv_transpose(x, kernel, bias=None, strides=None, padding="SAME", kernel_dilation=None,
                   transpose_kernel=False, precision=None, *, preferred_element_type=None) -> jax.Array:
    """The transposed convolution of `flax.nnx.ConvTranspose` (`lax.conv_transpose`), hand-written VJP.

    Args:
        x: `(*batch, *spatial, in)`.
        kernel: `(*kernel_size, in, out)`, or `(*kernel_size, out, in)` with `transpose_kernel`
            (then reversed in space, as the gradient of a forward convolution with it).
        bias: `(out,)` or None.
        padding: "SAME", "VALID" (as for the forward convolution), or explicit padding of the
            dilated input, an int or `(lo, hi)` pairs: not torch's `padding`, which is
            `kernel_dilation * (k - 1) - padding` here.

    Returns:
        `(*batch, *out_spatial, out)`.
    """
    return _conv_transpose_call(_conv_transpose_vjp, x, kernel, bias, strides, padding, kernel_dilation,
                                transpose_kernel, precision, preferred_element_type)


class Conv(nnx.Module):
    """Drop-in for `flax.nnx.Conv`: params `kernel (*kernel_size, in/groups, out)`, `bias (out,)`.

    Example:
        >>> layer = Conv(3, 4, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
        >>> layer(jnp.ones((1, 7, 5, 3))).shape
        (1, 4, 3, 4)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size,
        strides=1,
        *,
        padding="SAME",
        input_dilation=1,
        kernel_dilation=1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        mask=None,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=default_kernel_init,
        bias_init=default_bias_init,
        conv_general_dilated=lax.conv_general_dilated,
        promote_dtype=dtypes.promote_dtype,
        preferred_element_type=None,
        rngs: nnx.Rngs,
        kernel_metadata=MappingProxyType({}),
        bias_metadata=MappingProxyType({}),
    ):
        kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
        if in_features % feature_group_count:
            raise ValueError(f"`feature_group_count` (={feature_group_count}) must divide in_features (={in_features})")
        self.kernel_shape = kernel_size + (in_features // feature_group_count, out_features)
        # Same key order as flax.nnx.Conv, so equal Rngs give equal parameters.
        self.kernel, self.bias = params(self.kernel_shape, out_features, use_bias, param_dtype, kernel_init,
                                         bias_init, rngs, kernel_metadata, bias_metadata)
        self.in_features, self.out_features, self.kernel_size = in_features, out_features, kernel_size
        self.strides, self.padding = strides, padding
        self.input_dilation, self.kernel_dilation = input_dilation, kernel_dilation
        self.feature_group_count, self.use_bias, self.mask = feature_group_count, use_bias, mask
        self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
        self.conv_general_dilated, self.promote_dtype = conv_general_dilated, promote_dtype
        self.preferred_element_type = preferred_element_type

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        """`(*batch, *spatial, in) -> (*batch, *out_spatial, out)`."""
        refuse_out_sharding(out_sharding, "flax.nnx.Conv")
        kernel = self.kernel[...]
        if self.mask is not None:
            if self.mask.shape != self.kernel_shape:
                raise ValueError(f"`mask` (shape {self.mask.shape}) must have the kernel's shape {self.kernel_shape}")
            kernel = kernel * self.mask
        bias = None if self.bias is None else self.bias[...]
        x, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        return conv(x, kernel, bias, self.strides, self.padding, self.input_dilation, self.kernel_dilation,
                    self.feature_group_count, self.precision, preferred_element_type=self.preferred_element_type,
                    conv_general_dilated=self.conv_general_dilated)


class ConvTranspose(nnx.Module):
    """Drop-in for `flax.nnx.ConvTranspose`: `kernel (*kernel_size, in, out)` (`(..., out, in)`
    with `transpose_kernel`), `bias (out,)`.

    `padding` is Flax's, not torch's: see `conv_transpose`.

    Example:
        >>> layer = ConvTranspose(3, 4, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
        >>> layer(jnp.ones((1, 4, 3, 3))).shape
        (1, 8, 6, 4)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size,
        strides=None,
        *,
        padding="SAME",
        kernel_dilation=None,
        use_bias: bool = True,
        mask=None,
        dtype=None,
        param_dtype=jnp.float32,
        precision=None,
        kernel_init=default_kernel_init,
        bias_init=default_bias_init,
        transpose_kernel: bool = False,
        promote_dtype=dtypes.promote_dtype,
        preferred_element_type=None,
        rngs: nnx.Rngs,
        kernel_metadata=MappingProxyType({}),
        bias_metadata=MappingProxyType({}),
    ):
        kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
        channels = (out_features, in_features) if transpose_kernel else (in_features, out_features)
        self.kernel_shape = kernel_size + channels
        # Same key order as flax.nnx.ConvTranspose.
        self.kernel, self.bias = params(self.kernel_shape, out_features, use_bias, param_dtype, kernel_init,
                                         bias_init, rngs, kernel_metadata, bias_metadata)
        self.in_features, self.out_features, self.kernel_size = in_features, out_features, kernel_size
        self.strides, self.padding, self.kernel_dilation = strides, padding, kernel_dilation
        self.use_bias, self.mask, self.transpose_kernel = use_bias, mask, transpose_kernel
        self.dtype, self.param_dtype, self.precision = dtype, param_dtype, precision
        self.promote_dtype, self.preferred_element_type = promote_dtype, preferred_element_type

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """`(*batch, *spatial, in) -> (*batch, *out_spatial, out)`."""
        if self.padding == "CIRCULAR":
            raise ValueError(f"`padding` (={self.padding!r}) is not supported; use explicit pairs, or flax.nnx.ConvTranspose")
        kernel = self.kernel[...]
        if self.mask is not None:
            if self.mask.shape != self.kernel_shape:
                raise ValueError(f"`mask` (shape {self.mask.shape}) must have the kernel's shape {self.kernel_shape}")
            kernel = kernel * self.mask
        bias = None if self.bias is None else self.bias[...]
        x, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        return conv_transpose(x, kernel, bias, self.strides, self.padding, self.kernel_dilation,
                              self.transpose_kernel, self.precision, preferred_element_type=self.preferred_element_type)
