"""Cases for 2-d pooling: torch NCHW <-> Flax NHWC, no parameters.

torch's `stride=None` is the window; Flax's is 1, so the JAX side always gets explicit strides.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from ..layout import channels_last
from ..registry import Case, Tensor, register



def distinct_grid(rng, shape):
    """Per trial, a permutation of `k / 8` for `|k| <= n / 2`: no two entries tie, in any dtype.

    Such numbers are exact in bfloat16 (8 significant bits) while `n <= 256`, so rounding
    never makes a tie, and their spacing (1/8) dwarfs the finite-difference step, so no
    perturbation changes a window's winner.
    """
    trials, n = shape[0], int(np.prod(shape[1:]))
    if n > 256:
        raise ValueError(f"`shape` (={shape}) holds {n} > 256 entries per trial: k/8 would tie in bfloat16")
    return np.stack([rng.permutation(n) - n // 2 for _ in range(trials)]).reshape(shape) / 8.0


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# The cases' functions are module-level, their options bound by `functools.partial` in
# `_max_pool_case` and `_avg_pool_case`: they then pickle by reference, which closures do not.
# `op` and `cls` name a function or module class of torch_layers.pool / jax_layers.pool (and
# torch.nn.functional).


def _pool_torch(x, *, op, args):
    from torch_layers import pool

    return getattr(pool, op)(x, *args)


def _pool_torch_ref(x, *, op, args):
    import torch.nn.functional as F

    return getattr(F, op)(x, *args)


def _pool_torch_module(dtype, device, *, cls, args, **options):
    from torch_layers import pool

    return getattr(pool, cls)(*args, **options)


def _pool_jax_module(dtype, *, cls, args, **options):
    from jax_layers import pool

    return getattr(pool, cls)(*args, **options)


def _max_pool_jax(x, *, window, strides, pads, dil):
    from jax_layers.pool import max_pool

    return max_pool(x, window, strides, pads, window_dilation=dil)


def _max_pool_jax_ref(x, *, window, strides, pads, dil):
    import jax.numpy as jnp
    from jax import lax

    lead = ((0, 0),) * (x.ndim - 3)
    xp = jnp.pad(x, (*lead, *pads, (0, 0)), constant_values=-jnp.inf)
    if dil == (1, 1):
        ones = (1,) * (x.ndim - 3)
        return lax.reduce_window(xp, -jnp.inf, lax.max, (*ones, *window, 1), (*ones, *strides, 1), "VALID")
    # JAX has no VJP for a dilated max window: the max of strided slices, one per window entry.
    out = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(xp.shape[-3:-1], window, strides, dil)]
    parts = [
        xp[..., a * dil[0]: a * dil[0] + (out[0] - 1) * strides[0] + 1: strides[0],
           b * dil[1]: b * dil[1] + (out[1] - 1) * strides[1] + 1: strides[1], :]
        for a in range(window[0]) for b in range(window[1])
    ]
    return jnp.max(jnp.stack(parts), axis=0)


def _max_pool_case(name, x_shape, kernel_size, stride=None, padding=0, dilation=1):
    window, pad, dil = _pair(kernel_size), _pair(padding), _pair(dilation)
    strides = window if stride is None else _pair(stride)
    pads = tuple((p, p) for p in pad)
    torch_args = (kernel_size, stride, padding, dilation)
    # The declared case's; its shape buckets, built later under the same name, leave it be.
    jax_args = (window, strides, pads, dil)
    jax_opts = {"window": window, "strides": strides, "pads": pads, "dil": dil}
    layout = channels_last(2, len(x_shape) == 4)
    return Case(
        name=name,
        family="pool",
        inputs=(Tensor("input", x_shape, draw=distinct_grid, layout=layout),),
        torch_fn=functools.partial(_pool_torch, op="max_pool2d", args=torch_args),
        torch_ref=functools.partial(_pool_torch_ref, op="max_pool2d", args=torch_args),
        jax_fn=functools.partial(_max_pool_jax, **jax_opts),
        jax_ref=functools.partial(_max_pool_jax_ref, **jax_opts),
        torch_module=functools.partial(_pool_torch_module, cls="MaxPool2d", args=torch_args),
        jax_module=functools.partial(_pool_jax_module, cls="MaxPool", args=(window, strides, pads),
                                     window_dilation=dil),
        out_layouts=(layout,),
        config=(("torch", torch_args), ("jax", jax_args)),
        description=f"x {x_shape}, kernel_size={kernel_size}, stride={stride}, padding={padding}, dilation={dilation}",
    )


def _avg_pool_jax(x, *, window, strides, pads, count_include_pad, divisor_override):
    from jax_layers.pool import avg_pool

    if divisor_override is None:
        return avg_pool(x, window, strides, pads, count_include_pad)
    return avg_pool(x, window, strides, pads, True) * (window[0] * window[1] / divisor_override)


def _avg_pool_jax_ref(x, *, window, strides, pads, count_include_pad, divisor_override):
    import jax.numpy as jnp
    from jax import lax

    ones = (1,) * (x.ndim - 3)
    dims, steps, padding_ = (*ones, *window, 1), (*ones, *strides, 1), (*((0, 0),) * len(ones), *pads, (0, 0))
    total = lax.reduce_window(x, 0.0, lax.add, dims, steps, padding_)
    if divisor_override is not None:
        return total / divisor_override
    if count_include_pad:
        return total / (window[0] * window[1])
    count = lax.reduce_window(jnp.ones_like(x), 0.0, lax.add, dims, steps, padding_)
    return total / count


def _avg_pool_case(name, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True, divisor_override=None):
    """With `divisor_override` (torch only), every window sum is divided by it; the JAX side
    scales Flax's mean over the whole window by `window size / divisor_override`, exact in
    binary where the divisor is a power of two."""
    window, pad = _pair(kernel_size), _pair(padding)
    strides = window if stride is None else _pair(stride)
    pads = tuple((p, p) for p in pad)
    torch_args = (kernel_size, stride, padding, False, count_include_pad, divisor_override)
    jax_args = (window, strides, pads, count_include_pad)
    jax_opts = {"window": window, "strides": strides, "pads": pads, "count_include_pad": count_include_pad,
                "divisor_override": divisor_override}
    layout = channels_last(2, len(x_shape) == 4)
    plain = divisor_override is None  # Flax's AvgPool has no divisor_override: no modules then
    return Case(
        name=name,
        family="pool",
        inputs=(Tensor("input", x_shape, layout=layout),),
        torch_fn=functools.partial(_pool_torch, op="avg_pool2d", args=torch_args),
        torch_ref=functools.partial(_pool_torch_ref, op="avg_pool2d", args=torch_args),
        jax_fn=functools.partial(_avg_pool_jax, **jax_opts),
        jax_ref=functools.partial(_avg_pool_jax_ref, **jax_opts),
        torch_module=functools.partial(_pool_torch_module, cls="AvgPool2d", args=(kernel_size, stride, padding),
                                       count_include_pad=count_include_pad) if plain else None,
        jax_module=functools.partial(_pool_jax_module, cls="AvgPool", args=jax_args) if plain else None,
        out_layouts=(layout,),
        config=(("torch", torch_args), ("jax", jax_args)),
        description=f"x {x_shape}, kernel_size={kernel_size}, stride={stride}, padding={padding}, "
        f"count_include_pad={count_include_pad}, divisor_override={divisor_override}",
    )


def _grid(*values):
    return tuple(itertools.product(values, repeat=2))


def _pool_bucket(make, name, batch, channels, kernel_size, excess, padding, **options):
    """One shape bucket of `_register`'s: the input `excess` beyond the (dilated) window."""
    extent = [d * (k - 1) + 1 for k, d in zip(kernel_size, _pair(options.get("dilation", 1)))]
    padding = tuple(min(p, k // 2) for p, k in zip(_pair(padding), kernel_size))
    x_shape = (*(() if batch is None else (batch,)), channels, *(e + x for e, x in zip(extent, excess)))
    return make(name, x_shape, kernel_size, padding=padding, **options)


def _register(make, name, x_shape, kernel_size, *, narrow=None, **options):
    """The case at its declared shapes, with further shape buckets over batch (none, 1, 2),
    channels (1, 2), each window side (1..3), stride (None or 1..3 per side), padding, dilation
    (max) or count_include_pad (average), and 0..3 input rows and columns beyond the (dilated)
    window; `narrow` holds what the case is about to its own values. Padding (0 or 1 per side)
    is capped at half the window, as torch requires."""
    ranges = dict(batch=(None, 1, 2), channels=(1, 2), kernel_size=_grid(1, 2, 3), excess=_grid(0, 1, 2, 3),
                  stride=(None, *_grid(1, 2, 3)), padding=_grid(0, 1))
    ranges.update(dict(dilation=_grid(1, 2)) if make is _max_pool_case else dict(count_include_pad=(True, False)))
    ranges.update(narrow or {})
    register(make(name, x_shape, kernel_size, **options), functools.partial(_pool_bucket, make, name), ranges)


# Overlapping windows (stride < window) make inputs win, or share, several windows; padding
# puts -inf (max) or zeros (average) at the borders; a size-1 dim in each case.
_register(_max_pool_case, "max_pool2d", (2, 3, 7, 6), 3, stride=2, padding=1)
_register(_max_pool_case, "max_pool2d-overlap", (1, 2, 6, 5), (3, 2), stride=1,
          narrow=dict(kernel_size=_grid(2, 3), stride=(1,)))
_register(_max_pool_case, "max_pool2d-dilation2", (2, 1, 7, 8), 2, stride=1, padding=1, dilation=2,
          narrow=dict(dilation=(2,)))
_register(_max_pool_case, "max_pool2d-unbatched", (3, 5, 4), 2, stride=(1, 2), padding=(1, 0),
          narrow=dict(batch=(None,)))
_register(_avg_pool_case, "avg_pool2d", (2, 3, 7, 6), 3, stride=2, padding=1)
_register(_avg_pool_case, "avg_pool2d-exclude-pad", (1, 2, 5, 7), (2, 3), stride=(1, 2), padding=1,
          count_include_pad=False, narrow=dict(kernel_size=_grid(2, 3), padding=(1,), count_include_pad=(False,)))
_register(_avg_pool_case, "avg_pool2d-default-stride", (3, 1, 6, 4), 2, narrow=dict(stride=(None,)))
# A divisor unlike any window's count (4 against 6 entries), a power of two so that the JAX
# side's scale is exact in every dtype; torch ignores count_include_pad under it.
_register(_avg_pool_case, "avg_pool2d-divisor", (2, 1, 5, 6), (2, 3), stride=(1, 2), padding=1, divisor_override=4,
          narrow=dict(divisor_override=(4,)))
