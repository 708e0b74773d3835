"""Cases for dropout: one keep mask drawn in numpy, passed to both frameworks as an input.

torch's and JAX's random generators differ, so a mask drawn inside each layer would drop
different elements; an explicit mask makes the two runs comparable.
"""

from __future__ import annotations

import importlib
import itertools

from ..registry import Case, Tensor, register


def _keep(p):
    return lambda rng, shape: rng.random(shape) >= p


def _keep_float(p):
    return lambda rng, shape: (rng.random(shape) >= p).astype(float)


def _case(name, shape, p, mask_shape=None, mask_kind="bool"):
    mask_shape = shape if mask_shape is None else mask_shape
    # p = 1 drops every element whatever the mask: a mask that keeps half leaves that to the
    # layers' own rule for p = 1 (dividing by 1 - p would give inf or NaN there).
    keep = 0.5 if p == 1 else p
    draw = _keep(keep) if mask_kind == "bool" else _keep_float(keep)

    # Modules through importlib: `torch_layers.dropout` may be the re-exported function.
    def torch_fn(x, mask):
        return importlib.import_module("torch_layers.dropout").dropout(x, p, mask=mask)

    def torch_ref(x, mask):
        kept = x * mask.to(x.dtype)
        return kept * 0 if p == 1 else kept / (1 - p)  # p = 1 drops everything

    def jax_fn(x, mask):
        return importlib.import_module("jax_layers.dropout").dropout(x, p, mask)

    def jax_ref(x, mask):
        import jax.numpy as jnp

        return jnp.where(jnp.broadcast_to(mask != 0, x.shape), x * 0 if p == 1 else x / (1 - p), 0)

    def torch_module(dtype, device):
        return importlib.import_module("torch_layers.dropout").Dropout(p)

    def jax_module(dtype):
        from flax import nnx

        return importlib.import_module("jax_layers.dropout").Dropout(p, rngs=nnx.Rngs(dropout=0))

    return Case(
        name=name,
        family="dropout",
        inputs=(
            Tensor("input", shape),
            # The modules take the mask by keyword, as nnx.Dropout does: `module(x, mask=mask)`.
            Tensor("mask", mask_shape, kind=mask_kind, differentiable=False, draw=draw, keyword=True),
        ),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        description=f"{shape}, p={p}, {mask_kind} mask {mask_shape}",
    )


def _register(name, shape, p, mask_shape=None, mask_kind="bool"):
    """The case at its declared shapes, with every rank (0..3) and size (1, 2, 3 or 5 per dim)
    as further shape buckets; the mask stays shared along the dims the declared one shares."""
    shared = {i for i, (n, m) in enumerate(zip(shape, mask_shape or shape)) if m == 1 < n}

    def build(rank, sizes):
        shape = sizes[:rank]
        return _case(name, shape, p, tuple(1 if i in shared else n for i, n in enumerate(shape)), mask_kind)

    ranges = dict(rank=range(max(shared, default=-1) + 1, 4), sizes=tuple(itertools.product((1, 2, 3, 5), repeat=3)))
    register(_case(name, shape, p, mask_shape, mask_kind), build, ranges)


# p = 0.25: a scale of 4/3 is inexact in binary, so a wrong or missing scale shows.
_register("dropout", (3, 1, 5), 0.25)
_register("dropout-float-mask", (2, 4, 1), 0.6, mask_kind="float")
# One mask shared along dim 1, as nnx.Dropout(broadcast_dims=(1,)) draws it.
_register("dropout-broadcast", (4, 3, 2), 0.25, mask_shape=(4, 1, 2))
# p = 1: every element dropped, whatever the mask.
_register("dropout-p1", (4, 1, 3), 1.0)
