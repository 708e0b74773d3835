"""Cases for dropout: one keep mask drawn in numpy, passed to both frameworks as an input.

torch's and JAX's random generators differ, so a mask drawn inside each layer would drop
different elements; an explicit mask makes the two runs comparable.
"""

from __future__ import annotations

import functools
import importlib
import itertools

from ..registry import Case, Tensor, register
from .attention import _drop_keep

# The case's functions and draws are module-level, their options bound by `functools.partial`
# in `_case`: they then pickle by reference, which closures do not. Modules through importlib:
# `torch_layers.dropout` may be the re-exported function.


def _keep_float(p, rng, shape):
    """`_drop_keep`'s masks as floats (1 keeps)."""
    return _drop_keep(p, rng, shape).astype(float)


def _torch(x, mask, *, p):
    return importlib.import_module("torch_layers.dropout").dropout(x, p, mask=mask)


def _torch_ref(x, mask, *, p):
    kept = x * mask.to(x.dtype)
    return kept * 0 if p == 1 else kept / (1 - p)  # p = 1 drops everything


def _jax(x, mask, *, p):
    return importlib.import_module("jax_layers.dropout").dropout(x, p, mask)


def _jax_ref(x, mask, *, p):
    import jax.numpy as jnp

    return jnp.where(jnp.broadcast_to(mask != 0, x.shape), x * 0 if p == 1 else x / (1 - p), 0)


def _torch_module(dtype, device, *, p):
    return importlib.import_module("torch_layers.dropout").Dropout(p)


def _jax_module(dtype, *, p):
    from flax import nnx

    return importlib.import_module("jax_layers.dropout").Dropout(p, rngs=nnx.Rngs(dropout=0))


def _case(name, shape, p, mask_shape=None, mask_kind="bool"):
    mask_shape = shape if mask_shape is None else mask_shape
    # p = 1 drops every element whatever the mask: a mask that keeps half leaves that to the
    # layers' own rule for p = 1 (dividing by 1 - p would give inf or NaN there).
    keep = 0.5 if p == 1 else p
    draw = functools.partial(_drop_keep if mask_kind == "bool" else _keep_float, keep)
    return Case(
        name=name,
        family="dropout",
        inputs=(
            Tensor("input", shape),
            # The modules take the mask by keyword, as nnx.Dropout does: `module(x, mask=mask)`.
            Tensor("mask", mask_shape, kind=mask_kind, differentiable=False, draw=draw, keyword=True),
        ),
        torch_fn=functools.partial(_torch, p=p),
        torch_ref=functools.partial(_torch_ref, p=p),
        jax_fn=functools.partial(_jax, p=p),
        jax_ref=functools.partial(_jax_ref, p=p),
        torch_module=functools.partial(_torch_module, p=p),
        jax_module=functools.partial(_jax_module, p=p),
        description=f"{shape}, p={p}, {mask_kind} mask {mask_shape}",
    )


def _bucket(name, p, shared, mask_kind, rank, sizes):
    """The case at one bucket's sizes, its mask of size 1 along the dims in `shared`."""
    shape = sizes[:rank]
    return _case(name, shape, p, tuple(1 if i in shared else n for i, n in enumerate(shape)), mask_kind)


def _register(name, shape, p, mask_shape=None, mask_kind="bool"):
    """The case at its declared shapes, with every rank (0..3) and size (1, 2, 3 or 5 per dim)
    as further shape buckets; the mask stays shared along the dims the declared one shares."""
    shared = {i for i, (n, m) in enumerate(zip(shape, mask_shape or shape)) if m == 1 < n}
    ranges = dict(rank=range(max(shared, default=-1) + 1, 4), sizes=tuple(itertools.product((1, 2, 3, 5), repeat=3)))
    build = functools.partial(_bucket, name, p, shared, mask_kind)
    register(_case(name, shape, p, mask_shape, mask_kind), build, ranges)


# p = 0.25: a scale of 4/3 is inexact in binary, so a wrong or missing scale shows.
_register("dropout", (3, 1, 5), 0.25)
_register("dropout-float-mask", (2, 4, 1), 0.6, mask_kind="float")
# One mask shared along dim 1, as nnx.Dropout(broadcast_dims=(1,)) draws it.
_register("dropout-broadcast", (4, 3, 2), 0.25, mask_shape=(4, 1, 2))
# p = 1: every element dropped, whatever the mask.
_register("dropout-p1", (4, 1, 3), 1.0)
