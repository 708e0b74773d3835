"""Cases for softmax and log-softmax, along the last dim and along a leading one."""

from __future__ import annotations

from ..draw import normal
from ..registry import Case, Tensor, register


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


_register("softmax", "softmax", "Softmax", (4, 1, 6), -1)
_register("softmax-dim1", "softmax", "Softmax", (3, 5, 1, 2), 1)
_register("log_softmax", "log_softmax", "LogSoftmax", (2, 1, 7), -1)
_register("log_softmax-dim0", "log_softmax", "LogSoftmax", (4, 2, 1, 3), 0)
