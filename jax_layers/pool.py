"""Max and average pooling (any number of window dims), named like Flax's, with hand-written VJPs.

Inputs are channels last, `(*batch, *spatial, C)`, and `strides=None` means stride 1, as in
`flax.linen.max_pool` / `avg_pool` (re-exported as `nnx.max_pool` / `nnx.avg_pool`). Max
pooling keeps, per output, the flat index of the winner in the padded input and routes the
gradient there with a scatter-add; average pooling spreads `grad / divisor` back over each
window, the adjoint of a strided window sum (dilate by the stride, pad, sum windows).
Window geometry is static and travels in `nondiff_argnums`; the only residual is the
winners' index array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax


def _out_sizes(spatial, window, strides, pads, dilation):
    return [
        (n + lo + hi - (d * (k - 1) + 1)) // s + 1
        for n, k, s, (lo, hi), d in zip(spatial, window, strides, pads, dilation)
    ]


def window_index(spatial, window, strides, pads, dilation) -> np.ndarray:
    """`(prod(out), prod(window))` flat indices into the padded spatial grid, one row per output."""
    nd = len(window)
    padded = [n + lo + hi for n, (lo, hi) in zip(spatial, pads)]
    out = _out_sizes(spatial, window, strides, pads, dilation)
    axes = []
    for a, (o, k, s, d) in enumerate(zip(out, window, strides, dilation)):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
        shape = [1] * (2 * nd)
        shape[a], shape[nd + a] = o, k
        axes.append(pos.reshape(shape))
    axes = np.broadcast_arrays(*axes)
    return np.ravel_multi_index(tuple(axes), padded).reshape(int(np.prod(out)), int(np.prod(window)))


def _config(window, strides, pads, dilation):
    return (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0)), (1, *dilation, 1)


def _windows(spatial, window, strides, pads, dilation, x):
    """`(B, prod(out), prod(window), C)` window entries, -inf where they fall on padding."""
    idx = jnp.asarray(window_index(spatial, window, strides, pads, dilation))
    b, c = x.shape[0], x.shape[-1]
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf).reshape(b, -1, c)
    return xp[:, idx, :], idx


def _max_pool(spatial, window, strides, pads, dilation, x):
    # A gather, not lax.reduce_window: JAX cannot differentiate a dilated max window, and
    # grad-of-grad differentiates this primal too.
    entries, _ = _windows(spatial, window, strides, pads, dilation, x)
    out = _out_sizes(spatial, window, strides, pads, dilation)
    return entries.max(axis=2).reshape(x.shape[0], *out, x.shape[-1])


_max_pool_vjp = jax.custom_vjp(_max_pool, nondiff_argnums=(0, 1, 2, 3, 4))


def _max_pool_fwd(spatial, window, strides, pads, dilation, x):
    y = _max_pool(spatial, window, strides, pads, dilation, x)
    entries, idx = _windows(spatial, window, strides, pads, dilation, x)
    # argmax takes the first of equal values; the -inf padding never wins over a real entry.
    winner = jnp.argmax(entries, axis=2)  # (B, O, C), position within the window
    where = idx[jnp.arange(idx.shape[0])[None, :, None], winner]  # flat padded index
    return y, (where,)


def _max_pool_bwd(spatial, window, strides, pads, dilation, res, g):
    (where,) = res
    b, o, c = where.shape
    padded = [n + lo + hi for n, (lo, hi) in zip(spatial, pads)]
    # `.add`, not `.set`: with overlapping windows one input can win several of them.
    flat = jnp.zeros((b, int(np.prod(padded)), c), g.dtype)
    flat = flat.at[jnp.arange(b)[:, None, None], where, jnp.arange(c)[None, None, :]].add(g.reshape(b, o, c))
    grad = flat.reshape(b, *padded, c)
    return (grad[(slice(None), *(slice(lo, lo + n) for n, (lo, _) in zip(spatial, pads)))],)


_max_pool_vjp.defvjp(_max_pool_fwd, _max_pool_bwd)


def divisor(spatial, window, strides, pads, count_include_pad) -> np.ndarray | int:
    """What each window's sum is divided by: its size, or its count of non-padding entries."""
    if count_include_pad:
        return int(np.prod(window))
    counts = []
    out = _out_sizes(spatial, window, strides, pads, [1] * len(window))
    for n, k, s, (lo, _), o in zip(spatial, window, strides, pads, out):
        start = np.arange(o) * s - lo
        counts.append(np.minimum(start + k, n) - np.maximum(start, 0))
    grid = np.ones(())
    for cnt in counts:
        grid = np.multiply.outer(grid, cnt)
    return grid[None, ..., None]


def _avg_pool(spatial, window, strides, pads, count_include_pad, x):
    dims, steps, padding, _ = _config(window, strides, pads, [1] * len(window))
    total = lax.reduce_window(x, 0.0, lax.add, dims, steps, padding)
    return total / jnp.asarray(divisor(spatial, window, strides, pads, count_include_pad), x.dtype)


_avg_pool_vjp = jax.custom_vjp(_avg_pool, nondiff_argnums=(0, 1, 2, 3, 4))


def _avg_pool_fwd(spatial, window, strides, pads, count_include_pad, x):
    return _avg_pool(spatial, window, strides, pads, count_include_pad, x), ()


def window_sum_grad(spatial, window, strides, pads, g):
    """The adjoint of summing strided windows: every output gradient back over its window.

    Dilating `g` by the stride puts each output at its window's first padded row; `k - 1` zeros
    before it and a window sum then reach every row of that window.
    """
    out = g.shape[1:-1]
    padded = [n + lo + hi for n, (lo, hi) in zip(spatial, pads)]
    widen = [(k - 1, p - (o - 1) * s - 1, s - 1) for k, p, o, s in zip(window, padded, out, strides)]
    gp = lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), *widen, (0, 0, 0)))
    full = lax.reduce_window(gp, 0.0, lax.add, (1, *window, 1), (1,) * g.ndim, "VALID")
    return full[(slice(None), *(slice(lo, lo + n) for n, (lo, _) in zip(spatial, pads)))]


def _avg_pool_bwd(spatial, window, strides, pads, count_include_pad, res, g):
    scaled = g / jnp.asarray(divisor(spatial, window, strides, pads, count_include_pad), g.dtype)
    return (window_sum_grad(spatial, window, strides, pads, scaled),)


_avg_pool_vjp.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def _ints(value, n: int, name: str) -> tuple[int, ...]:
    t = (value,) * n if isinstance(value, int) else tuple(value)
    if len(t) != n or not all(isinstance(v, int) and v > 0 for v in t):
        raise ValueError(f"`{name}` (={value}) must be {n} positive ints")
    return t


def _pool_call(fn, inputs, window_shape, strides, padding, last):
    """Resolves Flax's pooling arguments and runs `fn` (a custom_vjp, or a variant of it).

    `last` is the final static argument: the window dilation (max) or `count_include_pad` (avg).
    Returns the output with `inputs`' leading dims.
    """
    window = _ints(window_shape, len(tuple(window_shape)) if not isinstance(window_shape, int) else 1, "window_shape")
    nd = len(window)
    strides = (1,) * nd if strides is None else _ints(strides, nd, "strides")
    if inputs.ndim < nd + 1:
        raise ValueError(f"`inputs` (shape {inputs.shape}) must have at least {nd + 1} dims (window dims and features)")
    batch = inputs.shape[: inputs.ndim - nd - 1]
    x = inputs.reshape(-1, *inputs.shape[inputs.ndim - nd - 1:])
    spatial = tuple(x.shape[1:-1])
    dilation = last if isinstance(last, tuple) else (1,) * nd
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"`padding` (={padding!r}) must be 'SAME', 'VALID' or (lo, hi) pairs")
        k = [d * (w - 1) + 1 for w, d in zip(window, dilation)]
        pads = tuple(tuple(int(v) for v in p) for p in lax.padtype_to_pads(spatial, k, strides, padding))
    else:
        pads = tuple(tuple(p) for p in padding)
        if len(pads) != nd or not all(len(p) == 2 and all(isinstance(v, int) and v >= 0 for v in p) for p in pads):
            raise ValueError(f"`padding` (={padding}) must be {nd} non-negative (lo, hi) pairs")
    y = fn(spatial, window, strides, pads, last, x)
    return y.reshape(*batch, *y.shape[1:])


def max_pool(inputs, window_shape, strides=None, padding="VALID", *, window_dilation=None) -> jax.Array:
    """Drop-in for `flax.linen.max_pool` (`nnx.max_pool`), with a hand-written VJP.

    Args:
        inputs: `(*batch, *spatial, C)`; no batch dims is fine.
        window_shape: the window, one size per spatial dim.
        strides: one per spatial dim; None is stride 1 (Flax's default, not torch's).
        padding: "SAME", "VALID" or `(lo, hi)` pairs, padded with -inf.
        window_dilation: one per spatial dim (an extension, as `lax.reduce_window`'s).

    Returns:
        `(*batch, *out_spatial, C)`.
    """
    nd = len(tuple(window_shape))
    dilation = (1,) * nd if window_dilation is None else _ints(window_dilation, nd, "window_dilation")
    return _pool_call(_max_pool_vjp, inputs, window_shape, strides, padding, dilation)


def avg_pool(inputs, window_shape, strides=None, padding="VALID", count_include_pad=True) -> jax.Array:
    """Drop-in for `flax.linen.avg_pool` (`nnx.avg_pool`), with a hand-written VJP.

    Args:
        inputs: `(*batch, *spatial, C)`.
        count_include_pad: divide by the window's size (True) or by its non-padding entries.

    Returns:
        `(*batch, *out_spatial, C)`, in `inputs`' dtype.
    """
    return _pool_call(_avg_pool_vjp, inputs, window_shape, strides, padding, bool(count_include_pad))


class MaxPool(nnx.Module):
    """`MaxPool(window_shape, strides, padding)(x) == max_pool(x, window_shape, strides, padding)`."""

    def __init__(self, window_shape, strides=None, padding="VALID", *, window_dilation=None):
        self.window_shape, self.strides, self.padding = tuple(window_shape), strides, padding
        self.window_dilation = window_dilation

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return max_pool(inputs, self.window_shape, self.strides, self.padding, window_dilation=self.window_dilation)


class AvgPool(nnx.Module):
    """`AvgPool(window_shape, strides, padding)(x) == avg_pool(x, window_shape, strides, padding)`."""

    def __init__(self, window_shape, strides=None, padding="VALID", count_include_pad=True):
        self.window_shape, self.strides, self.padding = tuple(window_shape), strides, padding
        self.count_include_pad = count_include_pad

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return avg_pool(inputs, self.window_shape, self.strides, self.padding, self.count_include_pad)
