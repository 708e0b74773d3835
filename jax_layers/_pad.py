"""Non-zero padding modes (reflect, replicate, circular) with a hand-written VJP.

Each mode pads by copying input positions: along a padded axis, output position `j` reads
input position `source(j)`, so the forward is a gather and the VJP scatters the cotangent
back, adding where one input position was copied several times. Unlike torch's, the modes
take any pad width (a reflection repeats with period `2 (n - 1)`, as `jnp.pad`'s does).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("reflect", "replicate", "circular")


def source(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The input position each of the `lo + n + hi` padded positions copies along one axis."""
    i = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular" or n == 1:
        return i % n
    # reflect: mirrored about the first and last positions, which are not repeated.
    m = i % (2 * (n - 1))
    return np.where(m < n, m, 2 * (n - 1) - m)


def _pad(pads, mode, x):
    for axis, (lo, hi) in enumerate(pads):
        if lo or hi:
            x = jnp.take(x, source(x.shape[axis], lo, hi, mode), axis=axis)
    return x


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _pad_vjp(pads, mode, x):
    return _pad(pads, mode, x)


def _pad_fwd(pads, mode, x):
    # No residuals: the shapes alone say where each cotangent goes.
    return _pad(pads, mode, x), ()


def _gathered_sum(pads, mode, g, source=source):
    """Each input position's sum of the cotangents of its copies, `source` naming the copies."""
    # The axes in reverse: each scatter undoes the gather that was done last.
    for axis in reversed(range(len(pads))):
        lo, hi = pads[axis]
        if lo or hi:
            n = g.shape[axis] - lo - hi
            moved = jnp.moveaxis(g, axis, 0)
            g = jnp.moveaxis(jnp.zeros((n, *moved.shape[1:]), g.dtype).at[source(n, lo, hi, mode)].add(moved), 0, axis)
    return g


def _pad_bwd(pads, mode, res, g):
    return (_gathered_sum(pads, mode, g),)


_pad_vjp.defvjp(_pad_fwd, _pad_bwd)


def pad(x: jax.Array, pads, mode: str) -> jax.Array:
    """`jnp.pad(x, pads, mode)` with torch's mode names, for reflect, replicate and circular.

    Args:
        x: any shape.
        pads: one `(lo, hi)` pair of non-negative ints per axis of `x`.
        mode: "reflect", "replicate" (`jnp.pad`'s "edge") or "circular" (`jnp.pad`'s "wrap").
    """
    if mode not in MODES:
        raise ValueError(f"`mode` (={mode!r}) must be one of {', '.join(map(repr, MODES))}")
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if len(pads) != x.ndim or any(lo < 0 or hi < 0 for lo, hi in pads):
        raise ValueError(f"`pads` (={pads}) must be one non-negative (lo, hi) pair per axis of `x` (shape {x.shape})")
    if any(lo or hi for (lo, hi), n in zip(pads, x.shape) if n == 0):
        raise ValueError(f"`pads` (={pads}) pad an empty axis of `x` (shape {x.shape})")
    return _pad_vjp(pads, mode, x)
