"""Cases for softmax and log-softmax, along the last dim and along a leading one, and with
JAX's `where` mask (torch has none: its side fills the masked-out inputs with -inf)."""

from __future__ import annotations

import functools

from ..draw import normal
from ..registry import Case, Tensor, register
from .attention import _keep_mask


def _case(name, fn_name, cls, shape, dim):
    # Modules through importlib: `torch_layers.softmax` may be the re-exported function.
    def torch_fn(x):
        import importlib

        return getattr(importlib.import_module("torch_layers.softmax"), fn_name)(x, dim)

    def torch_ref(x):
        import torch.nn.functional as F

        return getattr(F, fn_name)(x, dim)

    def jax_fn(x):
        import importlib

        return getattr(importlib.import_module("jax_layers.softmax"), fn_name)(x, axis=dim)

    def jax_ref(x):
        import jax

        return getattr(jax.nn, fn_name)(x, axis=dim)

    def torch_module(dtype, device):
        import importlib

        return getattr(importlib.import_module("torch_layers.softmax"), cls)(dim)

    def jax_module(dtype):
        import importlib

        return getattr(importlib.import_module("jax_layers.softmax"), cls)(axis=dim)

    return Case(
        name=name,
        family="softmax",
        # Scale 2 makes peaked rows, where the sum term of the backward matters most.
        inputs=(Tensor("input", shape, draw=normal(2.0)),),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        description=f"{shape}, dim={dim}",
    )


def _register(name, fn_name, cls, shape, dim):
    """The case at its declared shape, then buckets of every rank up to 4 that has `dim`, with
    sizes 1..5 (1..4 and 1..2 for dims 2 and 3). `dim` stays the same axis, one counted from
    the start spelled from the end where `negative`."""

    def build(rank, n0, n1, n2, n3, negative):
        sizes = [n0, n1, n2, n3][:rank]
        return _case(name, fn_name, cls, tuple(sizes), dim if dim < 0 else dim - rank * negative)

    ranks = range(dim + 1 if dim >= 0 else -dim, 5)
    ranges = dict(rank=ranks, n0=range(1, 6), n1=range(1, 6), n2=range(1, 5), n3=range(1, 3), negative=(False, True))
    register(_case(name, fn_name, cls, shape, dim), build, ranges)


def _masked_case(name, fn_name, shape):
    """`fn_name` over the last dim with a `where` mask that keeps one element or more per row.

    Masked-out outputs are 0 (softmax), their drawn cotangents reaching the hand-written
    backward, which must drop them; or -inf (log-softmax), read out as 0 here, since a -inf
    output leaves finite differences nothing to measure.
    """
    read_out = fn_name == "log_softmax"

    def torch_masked(fn, x, where):
        y = fn(x.masked_fill(~where, -float("inf")), -1)
        return y.masked_fill(~where, 0) if read_out else y

    def jax_masked(fn, x, where):
        import jax.numpy as jnp

        y = fn(x, axis=-1, where=where)
        return jnp.where(where, y, 0) if read_out else y

    def torch_fn(x, where):
        import importlib

        return torch_masked(getattr(importlib.import_module("torch_layers.softmax"), fn_name), x, where)

    def torch_ref(x, where):
        import torch.nn.functional as F

        return torch_masked(getattr(F, fn_name), x, where)

    def jax_fn(x, where):
        import importlib

        return jax_masked(getattr(importlib.import_module("jax_layers.softmax"), fn_name), x, where)

    def jax_ref(x, where):
        import jax

        return jax_masked(getattr(jax.nn, fn_name), x, where)

    return Case(
        name=name,
        family="softmax",
        inputs=(
            Tensor("input", shape, draw=normal(2.0)),
            Tensor("where", shape, kind="bool", differentiable=False, draw=functools.partial(_keep_mask, 0.4)),
        ),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        description=f"{shape}, dim=-1, where mask {shape} (about 40% masked out, one or more kept per row)",
    )


def _register_masked(name, fn_name, shape):
    """The case at its declared shape, then buckets of ranks 1..4 with sizes 1..5 (1..4 and 1..2
    for dims 2 and 3)."""

    def build(rank, n0, n1, n2, n3):
        return _masked_case(name, fn_name, (n0, n1, n2, n3)[:rank])

    ranges = dict(rank=range(1, 5), n0=range(1, 6), n1=range(1, 6), n2=range(1, 5), n3=range(1, 3))
    register(_masked_case(name, fn_name, shape), build, ranges)


_register("softmax", "softmax", "Softmax", (4, 1, 6), -1)
_register("softmax-dim1", "softmax", "Softmax", (3, 5, 1, 2), 1)
_register("log_softmax", "log_softmax", "LogSoftmax", (2, 1, 7), -1)
_register("log_softmax-dim0", "log_softmax", "LogSoftmax", (4, 2, 1, 3), 0)
_register_masked("softmax-where", "softmax", (3, 1, 7))
_register_masked("log_softmax-where", "log_softmax", (2, 5, 1, 6))
