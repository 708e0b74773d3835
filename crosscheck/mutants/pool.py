"""Planted bugs in the pooling layers' backward passes."""

from __future__ import annotations

import importlib

import numpy as np

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _config(case, side):
    """The registered (declared) case's static arguments on `side`."""
    from ..registry import get

    return dict(get(case).config)[side]


def max_pool_grad_overwrites():
    from torch_layers import pool as P

    def backward(ctx, g, _):
        (indices,) = ctx.saved_tensors
        n, c, h, w = ctx.input_shape
        # scatter, not scatter_add: an input that wins two overlapping windows keeps one gradient.
        flat = g.new_zeros((n, c, h * w)).scatter(2, indices.flatten(2), g.flatten(2))
        return flat.reshape(n, c, h, w), None, None, None, None, None

    cls = torch_with_backward(P.MaxPool2dFunction, backward)
    args = _config("max_pool2d-overlap", "torch")

    def fn(x):
        x, _, k, s, p, d = P._pool_args(x, *args)
        return cls.apply(x, k, s, p, d, False)[0]

    return fn


def _avg_pool(cls, case):
    """`x -> cls.apply(x, ...)` with `case`'s arguments, as `avg_pool2d` applies AvgPool2dFunction."""
    from torch_layers import pool as P

    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override = _config(case, "torch")

    def fn(x):
        x, _, k, s, p, _ = P._pool_args(x, kernel_size, stride, padding)
        return cls.apply(x, k, s, p, ceil_mode, count_include_pad, divisor_override)

    return fn


def avg_pool_divisor_counts_padding():
    from torch_layers import pool as P

    def backward(ctx, g):
        kernel_size, stride, padding, *_ = ctx.config
        # Divides by the full window even where count_include_pad=False counts fewer entries.
        gi = P.window_sum_grad(g / (kernel_size[0] * kernel_size[1]), ctx.input_shape, kernel_size, stride, padding)
        return gi, None, None, None, None, None, None

    return _avg_pool(torch_with_backward(P.AvgPool2dFunction, backward), "avg_pool2d-exclude-pad")


def avg_pool_divisor_override_ignored():
    from torch_layers import pool as P

    def backward(ctx, g):
        ctx.config = (*ctx.config[:5], None)  # divisor_override forgotten: the windows' counts divide
        return P.AvgPool2dFunction.backward(ctx, g)

    return _avg_pool(torch_with_backward(P.AvgPool2dFunction, backward), "avg_pool2d-divisor")


def jax_max_pool_padding_offset_ignored():
    import jax.numpy as jnp

    L = importlib.import_module("jax_layers.pool")

    def bwd(spatial, window, strides, pads, dilation, res, g):
        (where,) = res
        b, o, c = where.shape
        padded = [n + lo + hi for n, (lo, hi) in zip(spatial, pads)]
        flat = jnp.zeros((b, int(np.prod(padded)), c), g.dtype)
        flat = flat.at[jnp.arange(b)[:, None, None], where, jnp.arange(c)[None, None, :]].add(g.reshape(b, o, c))
        grad = flat.reshape(b, *padded, c)
        # Crops the padded gradient from its corner, not from where the input starts.
        return (grad[(slice(None), *(slice(0, n) for n in spatial))],)

    f = jax_with_bwd(L._max_pool, L._max_pool_fwd, bwd, nondiff_argnums=(0, 1, 2, 3, 4))
    return lambda x: L._pool_call(f, x, *_config("max_pool2d", "jax"))


def jax_avg_pool_divisor_dropped():
    L = importlib.import_module("jax_layers.pool")

    def bwd(spatial, window, strides, pads, count_include_pad, res, g):
        # Spreads the gradient of the window sum, not of the mean.
        return (L.window_sum_grad(spatial, window, strides, pads, g),)

    f = jax_with_bwd(L._avg_pool, L._avg_pool_fwd, bwd, nondiff_argnums=(0, 1, 2, 3, 4))
    return lambda x: L._pool_call(f, x, *_config("avg_pool2d", "jax"))


for _name, _case, _side, _make, _desc in [
    ("max-grad-overwrites", "max_pool2d-overlap", "torch", max_pool_grad_overwrites,
     "max pool gradient assigned, not accumulated, where overlapping windows share a winner"),
    ("avg-divisor-counts-padding", "avg_pool2d-exclude-pad", "torch", avg_pool_divisor_counts_padding,
     "average pool gradient divided by the full window where padding is excluded"),
    ("avg-divisor-override-ignored", "avg_pool2d-divisor", "torch", avg_pool_divisor_override_ignored,
     "average pool gradient divided by the windows' counts, not by divisor_override"),
    ("max-padding-offset-ignored", "max_pool2d", "jax", jax_max_pool_padding_offset_ignored,
     "max pool gradient routed without the padding offset"),
    ("avg-divisor-dropped", "avg_pool2d", "jax", jax_avg_pool_divisor_dropped,
     "average pool gradient not divided by the window size"),
]:
    register_mutant(Mutant(f"pool/{_name}", _case, _side, _make(), VALUES, _desc))
