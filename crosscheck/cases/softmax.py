"""Cases for softmax and log-softmax, along the last dim and along a leading one, and with
JAX's `where` mask (torch has none: its side fills the masked-out inputs with -inf)."""

from __future__ import annotations

import functools
import importlib

from ..draw import normal
from ..registry import Case, Tensor, register
from .attention import _keep_mask

CLASSES = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}

# The case's functions are module-level, their options bound by `functools.partial` in
# `_case`: they then pickle by reference, which closures do not. Each side's function serves
# both its layer and its reference (`module`), with or without the `where` mask. Modules
# through importlib: `torch_layers.softmax` may be the re-exported function.


def _torch(x, where=None, *, module, fn_name, dim):
    fn = getattr(importlib.import_module(module), fn_name)
    if where is None:
        return fn(x, dim)
    y = fn(x.masked_fill(~where, -float("inf")), dim)
    return y.masked_fill(~where, 0) if fn_name == "log_softmax" else y


def _jax(x, where=None, *, module, fn_name, dim):
    fn = getattr(importlib.import_module(module), fn_name)
    if where is None:
        return fn(x, axis=dim)
    import jax.numpy as jnp

    y = fn(x, axis=dim, where=where)
    return jnp.where(where, y, 0) if fn_name == "log_softmax" else y


def _torch_module(dtype, device, *, cls, dim):
    return getattr(importlib.import_module("torch_layers.softmax"), cls)(dim)


def _jax_module(dtype, *, cls, dim):
    return getattr(importlib.import_module("jax_layers.softmax"), cls)(axis=dim)


def _case(name, fn_name, shape, dim, masked=False):
    """`fn_name` along `dim`; with `masked`, a `where` mask that keeps one element or more per
    row (and no modules: torch's have no mask).

    Masked-out outputs are 0 (softmax), their drawn cotangents reaching the hand-written
    backward, which must drop them; or -inf (log-softmax), read out as 0 here, since a -inf
    output leaves finite differences nothing to measure.
    """
    # Scale 2 makes peaked rows, where the sum term of the backward matters most.
    inputs = (Tensor("input", shape, draw=normal(2.0)),)
    if masked:
        keep = functools.partial(_keep_mask, 0.4)
        inputs += (Tensor("where", shape, kind="bool", differentiable=False, draw=keep),)
    modules = dict(cls=CLASSES[fn_name], dim=dim)
    return Case(
        name=name,
        family="softmax",
        inputs=inputs,
        torch_fn=functools.partial(_torch, module="torch_layers.softmax", fn_name=fn_name, dim=dim),
        torch_ref=functools.partial(_torch, module="torch.nn.functional", fn_name=fn_name, dim=dim),
        jax_fn=functools.partial(_jax, module="jax_layers.softmax", fn_name=fn_name, dim=dim),
        jax_ref=functools.partial(_jax, module="jax.nn", fn_name=fn_name, dim=dim),
        torch_module=None if masked else functools.partial(_torch_module, **modules),
        jax_module=None if masked else functools.partial(_jax_module, **modules),
        description=f"{shape}, dim={dim}"
        + (f", where mask {shape} (about 40% masked out, one or more kept per row)" if masked else ""),
    )


def _bucket(name, fn_name, dim, masked, rank, n0, n1, n2, n3, negative=False):
    """The case at one bucket's sizes, `dim` counted from the start spelled from the end where `negative`."""
    return _case(name, fn_name, (n0, n1, n2, n3)[:rank], dim if dim < 0 else dim - rank * negative, masked)


def _register(name, fn_name, shape, dim, masked=False):
    """The case at its declared shape, then buckets of every rank up to 4 that has `dim`, with
    sizes 1..5 (1..4 and 1..2 for dims 2 and 3). `dim` stays the same axis, one counted from
    the start spelled from the end where `negative` (not drawn for `masked`, along the last dim)."""
    ranks = range(dim + 1 if dim >= 0 else -dim, 5)
    ranges = dict(rank=ranks, n0=range(1, 6), n1=range(1, 6), n2=range(1, 5), n3=range(1, 3))
    if not masked:
        ranges["negative"] = (False, True)
    build = functools.partial(_bucket, name, fn_name, dim, masked)
    register(_case(name, fn_name, shape, dim, masked), build, ranges)


_register("softmax", "softmax", (4, 1, 6), -1)
_register("softmax-dim1", "softmax", (3, 5, 1, 2), 1)
_register("log_softmax", "log_softmax", (2, 1, 7), -1)
_register("log_softmax-dim0", "log_softmax", (4, 2, 1, 3), 0)
_register("softmax-where", "softmax", (3, 1, 7), -1, masked=True)
_register("log_softmax-where", "log_softmax", (2, 5, 1, 6), -1, masked=True)
