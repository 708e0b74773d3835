"""Cases for dropout: one keep mask drawn in numpy, passed to both frameworks as an input.

torch's and JAX's random generators differ, so a mask drawn inside each layer would drop
different elements; an explicit mask makes the two runs comparable.
"""

from __future__ import annotations

import importlib

from ..registry import Case, Tensor, register


def _keep(p):
    return lambda rng, shape: rng.random(shape) >= p


def _keep_float(p):
    return lambda rng, shape: (rng.random(shape) >= p).astype(float)


def _case(name, shape, p, mask_shape=None, mask_kind="bool"):
    mask_shape = shape if mask_shape is None else mask_shape
    draw = _keep(p) if mask_kind == "bool" else _keep_float(p)

    # Modules through importlib: `torch_layers.dropout` may be the re-exported function.
    def torch_fn(x, mask):
        return importlib.import_module("torch_layers.dropout").dropout(x, p, mask=mask)

    def torch_ref(x, mask):
        return x * mask.to(x.dtype) / (1 - p)

    def jax_fn(x, mask):
        return importlib.import_module("jax_layers.dropout").dropout(x, p, mask)

    def jax_ref(x, mask):
        import jax.numpy as jnp

        return jnp.where(jnp.broadcast_to(mask != 0, x.shape), x / (1 - p), 0)

    def torch_module(dtype, device):
        return importlib.import_module("torch_layers.dropout").Dropout(p)

    def jax_module(dtype):
        from flax import nnx

        Dropout = importlib.import_module("jax_layers.dropout").Dropout

        class WithMask(nnx.Module):
            """The harness calls `module(input, mask)`; nnx.Dropout takes the mask by keyword."""

            def __init__(self):
                self.dropout = Dropout(p, rngs=nnx.Rngs(dropout=0))

            def __call__(self, x, mask):
                return self.dropout(x, mask=mask)

        return WithMask()

    return register(
        Case(
            name=name,
            family="dropout",
            inputs=(
                Tensor("input", shape),
                Tensor("mask", mask_shape, kind=mask_kind, differentiable=False, draw=draw),
            ),
            torch_fn=torch_fn,
            torch_ref=torch_ref,
            jax_fn=jax_fn,
            jax_ref=jax_ref,
            torch_module=torch_module,
            jax_module=jax_module,
            description=f"{shape}, p={p}, {mask_kind} mask {mask_shape}",
        )
    )


# p = 0.25: a scale of 4/3 is inexact in binary, so a wrong or missing scale shows.
_case("dropout", (3, 1, 5), 0.25)
_case("dropout-float-mask", (2, 4, 1), 0.6, mask_kind="float")
# One mask shared along dim 1, as nnx.Dropout(broadcast_dims=(1,)) draws it.
_case("dropout-broadcast", (4, 3, 2), 0.25, mask_shape=(4, 1, 2))
