"""Requests: a JAX program and its arguments, not yet run, and how to finish its raw output.

Each function here makes one (`forward`, `vjp`, `hvp`, `rounding`, `module`, the last on a
module that `build_module` built); the adapter runs it alone (`JaxAdapter.run`) or fused with a
case run's others (`JaxAdapter.run_together`). A request is named for the program cache by its
caller (`name`, None: not kept).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from . import jax_programs as programs
from . import vjp_result


@dataclass
class Request:
    """One program call, not yet run: `body(*args)` compiled, then `finish` on its raw output.
    `name`, `fn` and `extra` are what the program cache needs (see `JaxAdapter._call`);
    `many` whether its arguments hold MANY_TRIALS or more trials."""

    body: object  # the function that `programs.program` compiles
    name: str | None
    fn: object
    args: tuple
    finish: object
    extra: tuple | None = ()
    many: bool = False


def _split(args: list, diff: list[bool]):
    """`(idx, primals, others)`: the differentiable positions, their arguments, the rest by position."""
    idx = tuple(i for i, d in enumerate(diff) if d)
    return idx, tuple(args[i] for i in idx), {i: a for i, (a, d) in enumerate(zip(args, diff)) if not d}


def _placed(adapter, n: int, idx, values) -> list:
    """`n` entries in numpy: `values` at positions `idx`, None elsewhere."""
    full = [None] * n
    for i, v in zip(idx, values):
        full[i] = adapter.to_numpy(v)
    return full


def forward(adapter, fn, args: list, name: str | None = None) -> Request:
    """`fn` over the trial axis of every arg; for a custom_vjp this is the undecorated path.
    `name` names the program for the program cache (see `JaxAdapter.use_programs`)."""
    finish = lambda outs: tuple(adapter.to_numpy(o) for o in outs)  # noqa: E731
    body = programs.forward_body(fn)
    return Request(body, name and f"{name} forward", fn, tuple(args), finish, many=programs.many(args))


def vjp(adapter, fn, args: list, diff: list[bool], cts: list, name: str | None = None) -> Request:
    """Outputs (from the fwd rule) and VJPs of `fn` over trials; see TorchAdapter.vjp."""
    idx, primals, others = _split(args, diff)
    finish = lambda raw: vjp_result(adapter, len(args), list(idx), *raw)  # noqa: E731
    body = programs.vjp_body(fn, idx)
    return Request(body, name and f"{name} vjp {list(idx)}", fn, (primals, others, tuple(cts)), finish,
                   many=programs.many(args))


def hvp(adapter, fn, args: list, diff: list[bool], cts: list, vs: list, name: str | None = None) -> Request:
    """Hessian-vector products of `L = sum(ct * fn(args))` along `vs`: the JVP of its gradient."""
    idx, primals, others = _split(args, diff)
    finish = lambda hv: _placed(adapter, len(args), idx, hv)  # noqa: E731
    body = programs.hvp_body(fn, idx)
    return Request(body, name and f"{name} hvp {list(idx)}", fn, (primals, others, tuple(cts), tuple(vs)), finish,
                   many=programs.many(args))


def rounding(adapter, fn, args: list, diff: list[bool], cts: list, units: tuple[float, float],
             vs: list | None = None, draws: int = 8, name: str | None = None) -> Request:
    """How far each output and gradient of `fn`'s VJP (or, given `vs`, each Hessian product)
    may move under rounding: `jax_rounding.spread` per trial, in float64, with `units` the unit
    roundoffs of results and of sums' terms. The result is the VJP's `(outs, grads)` (grads
    None where not differentiable) or the products' list."""
    from .jax_rounding import noise, spread_body

    idx, primals, others = _split(args, diff)
    place = lambda values: _placed(adapter, len(args), idx, values)  # noqa: E731
    head = (jnp.asarray(units, jnp.float64), jnp.asarray(noise(draws)))
    if vs is None:
        body, split, what = spread_body(programs.vjp_per_trial(fn, idx)), (*head, primals, others, tuple(cts)), "vjp"
        finish = lambda raw: (tuple(adapter.to_numpy(o) for o in raw[0]), place(raw[1]))  # noqa: E731
    else:
        body = spread_body(programs.hvp_both_orders_per_trial(fn, idx))
        split, what = (*head, primals, others, tuple(cts), tuple(vs)), "hvp"
        finish = lambda raw: place([np.maximum(*map(adapter.to_numpy, pair)) for pair in zip(*raw)])  # noqa: E731
    return Request(body, name and f"{name} rounding {what} {list(idx)}", fn, split, finish, many=programs.many(args))


def build_module(adapter, factory, dtype: str, values: dict):
    """`factory(dtype)` with `values` (`{nnx path: numpy array}`) loaded in `dtype`.

    The module is built abstractly (`nnx.eval_shape`: no initialiser runs, and each eager
    initialiser op would compile a program of its own) when `values` fill every variable;
    otherwise (an RNG stream, statistics that training updates) it is built concretely, inside
    one compiled call. Through the adapter's program cache (ProgramCache.build: the abstract
    build is kept between runs).
    """
    import jax
    from flax import nnx

    from ..convert._core import _nnx_set

    jdtype = adapter.jax_dtype(dtype)
    build = functools.partial(adapter.programs.build, (factory, dtype))
    module = nnx.merge(*build(lambda: programs.abstract_module(factory, jdtype), keep=True), copy=True)
    for path, value in values.items():
        _nnx_set(module, path, value, jdtype)
    leaves = jax.tree_util.tree_leaves(nnx.state(module))
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
        with jax.default_device(adapter.device):
            module = build(lambda: programs.built_module(factory, jdtype)())
        for path, value in values.items():
            _nnx_set(module, path, value, jdtype)
    return module


def module(adapter, model, inputs: list, in_diff: list[bool], cts: list, keywords=None, key=None, name=None,
           via=None) -> Request:
    """One trial through `model(*inputs)` (or `via(model, *inputs)`: see `Case.jax_call`),
    differentiated with respect to its `nnx.Param`s and the differentiable inputs, as
    `nnx.grad` does for a user; compiled, so that a second run takes the program from the
    persistent cache.

    Finishes as `(outs, input_grads {i: g}, param_grads {path: g}, meta, expected_meta)`;
    `meta` holds each raw gradient's `(shape, dtype)`, `expected_meta` each parameter's.
    `key` names the module's structure (its factory and dtype: see `programs.graphdef`).
    """
    from flax import nnx

    from ..convert._core import flatten

    idx = tuple(i for i, d in enumerate(in_diff) if d)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    keywords = tuple(keywords or [None] * len(inputs))
    body = programs.module_body(programs.graphdef(key, graphdef), idx, keywords, via)
    named = name and f"{name} module {idx} {keywords}"

    def finish(raw):
        outs, model_grads, input_grads = raw
        param_grads = flatten(nnx.to_pure_dict(model_grads))
        grads = {**dict(zip(idx, input_grads)), **param_grads}
        meta = {k: (tuple(g.shape), adapter.dtype_name(g)) for k, g in grads.items()}
        expected = {k: (tuple(p.shape), adapter.dtype_name(p)) for k, p in flatten(nnx.to_pure_dict(params)).items()}
        expected.update({i: (tuple(inputs[i].shape), adapter.dtype_name(inputs[i])) for i in idx})
        return (
            tuple(adapter.to_numpy(o) for o in outs),
            {i: adapter.to_numpy(g) for i, g in zip(idx, input_grads)},
            {k: adapter.to_numpy(g) for k, g in param_grads.items()},
            meta,
            expected,
        )

    fn = key and (key[0] if via is None else (key[0], via))
    args = (params, rest, tuple(inputs), tuple(cts))
    return Request(body, named, fn, args, finish, adapter.programs.files(key))
