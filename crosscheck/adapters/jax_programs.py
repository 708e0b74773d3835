"""The JAX side's programs: what each computes over the trial axis, and how it is compiled.

A body is a function of a request's arguments (`forward_body`, `vjp_body`, `hvp_body`,
`module_body`); `program(body)` compiles one, `fused_program(bodies)` several as one. Every
body and program is made once per process and kept (`kept`), so repeated runs of a case (other
dtypes trace anew inside jit, other trials counts too) never rebuild the Python wrapper, and
jit's own cache skips tracing when shapes and dtypes repeat. A fused program composes the
bodies, not their programs: only a top-level jit takes `compiler_options`.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

from . import call


def kept(fn):
    """`fn`, its results kept for the process until `drop_all()`."""
    cached = functools.lru_cache(maxsize=None)(fn)
    _CLEARS.append(cached.cache_clear)
    return cached


_CLEARS: list = []  # how to drop what each `kept` function and table holds


def drop_all() -> None:
    """Drop every kept body, program, module build and JAX's own caches of their traces."""
    for clear in _CLEARS:
        clear()
    jax.clear_caches()


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# -- compile options ---------------------------------------------------------------------------

# The programs here are many and tiny: LLVM's optimisation passes cost more than they save, so
# they compile at backend optimisation level 0 (docs/bench.md measures it), and at level 2 over
# many trials, where the code's speed comes to matter. Neither where the user set the level in
# `XLA_FLAGS`. The level travels with each program (`compiler_options`), not through the
# environment: a level set in `os.environ` reaches every later JAX program of the user's
# process and every child process, which would then read it as the user's choice.
MANY_TRIALS = 64
LEVEL = "xla_backend_optimization_level"
# XLA:CPU emits its fusions through MLIR ("fusion emitters") unless told not to; the older
# emitters compile faster, with warm runs and every check unchanged (docs/bench.md, "XLA:CPU's
# fusion emitters off"). Not where the user set it in `XLA_FLAGS`.
FUSION_EMITTERS = "xla_cpu_use_fusion_emitters"


def jit(f, many: bool):
    """`jax.jit(f)` with `compile_options()` and the backend optimisation level for `many`
    trials or few."""
    options = dict(compile_options())
    if LEVEL not in os.environ.get("XLA_FLAGS", ""):
        options[LEVEL] = 2 if many else 0
    return jax.jit(f, compiler_options=options)


@functools.cache
def compile_options() -> tuple:
    """`((option, value), ...)` for every program: the fusion emitters off, where this XLA has
    the option (a tiny program is compiled with it once; an XLA without it raises there)."""
    if FUSION_EMITTERS in os.environ.get("XLA_FLAGS", ""):
        return ()
    options = {FUSION_EMITTERS: False}
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
    except Exception:  # an XLA that no longer knows the option: compile as it chooses
        return ()
    return tuple(options.items())


def many(args) -> bool:
    """Whether `args` (trial axis first) hold MANY_TRIALS or more trials."""
    leaves = [x for x in jax.tree_util.tree_leaves(args) if getattr(x, "ndim", 0)]
    return bool(leaves) and leaves[0].shape[0] >= MANY_TRIALS


@kept
def program(body, many: bool = False):
    """`body` compiled on its own (`jit`)."""
    return jit(body, many)


@kept
def fused_program(bodies: tuple, many: bool):
    """One program that runs every one of `bodies`, each on its own arguments."""
    return jit(lambda groups: tuple(b(*a) for b, a in zip(bodies, groups)), many)


# -- bodies: one per (function, differentiable positions) ---------------------------------------


def _call_with(fn, idx, others, primals):
    """`fn`'s outputs with the differentiable arguments `idx` taken from `primals`."""
    a = {**others, **dict(zip(idx, primals))}
    return as_tuple(fn(*(a[i] for i in range(len(a)))))


def _loss(fn, idx, others, cts):
    """`p -> sum(ct * fn(args))`, the differentiable arguments `idx` taken from `p`."""
    return lambda p: sum(jnp.sum(o * c) for o, c in zip(_call_with(fn, idx, others, p), cts))


@kept
def forward_body(fn):
    return jax.vmap(lambda *a: as_tuple(fn(*a)))


@kept
def vjp_per_trial(fn, idx: tuple[int, ...]):
    def per_trial(primals, others, cts):
        out, vjp_fn = jax.vjp(lambda *p: _call_with(fn, idx, others, p), *primals)
        return out, vjp_fn(tuple(cts))

    return per_trial


@kept
def vjp_body(fn, idx: tuple[int, ...]):
    return jax.vmap(vjp_per_trial(fn, idx))


@kept
def hvp_per_trial(fn, idx: tuple[int, ...]):
    def per_trial(primals, others, cts, vs):
        # Forward over reverse: the tangent of `grad(loss)` along `vs` is `H vs`. It takes
        # the custom bwd rule's derivative as grad of grad does, and traces in about half the
        # time.
        return jax.jvp(jax.grad(_loss(fn, idx, others, cts)), (primals,), (tuple(vs),))[1]

    return per_trial


@kept
def hvp_both_orders_per_trial(fn, idx: tuple[int, ...]):
    """The same products twice: forward over reverse (as JAX computes them) and reverse over
    reverse (`grad(<grad(loss), vs>)`, as torch's double backward does). For the rounding
    model, which must see both: reverse over reverse rounds each path's contribution before
    summing them (mse's products differed by 240 u between torch's two double backwards, from
    unit-size contributions that cancel), forward over reverse carries one tangent through
    other steps (gelu-tanh's model allowed 0.6 of its error under reverse over reverse alone)."""
    forward = hvp_per_trial(fn, idx)

    def per_trial(primals, others, cts, vs):
        loss = _loss(fn, idx, others, cts)
        along = lambda p: sum(jnp.sum(g * v) for g, v in zip(jax.grad(loss)(p), vs))  # noqa: E731
        return forward(primals, others, cts, vs), jax.grad(along)(primals)

    return per_trial


@kept
def hvp_body(fn, idx: tuple[int, ...]):
    return jax.vmap(hvp_per_trial(fn, idx))


# -- modules -----------------------------------------------------------------------------------

_GRAPHDEFS: dict = {}
_CLEARS.append(_GRAPHDEFS.clear)


def graphdef(key, made):
    """The first GraphDef seen for the module structure `key` (its factory and dtype): a
    GraphDef may hold functions that compare unequal from one build to the next, which would
    trace anew."""
    return made if key is None else _GRAPHDEFS.setdefault(key, made)


@kept
def module_body(graphdef, idx: tuple[int, ...], keywords: tuple[str | None, ...], via=None):
    """`(params, rest, inputs, cts) -> (outs, param grads, input grads)` for one module
    structure: the user's `nnx.grad` over the module, rebuilt from its state inside `jit`,
    called directly or `via(module, *inputs)`."""
    from flax import nnx

    def run(params, rest, inputs, cts):
        def loss(model, *diff_inputs):
            xs = list(inputs)
            for i, v in zip(idx, diff_inputs):
                xs[i] = v
            outs = as_tuple(call(model if via is None else functools.partial(via, model), xs, keywords))
            return sum(jnp.sum(o * c) for o, c in zip(outs, cts)), outs

        model = nnx.merge(graphdef, params, rest)
        (model_grads, *input_grads), outs = nnx.grad(loss, argnums=tuple(range(1 + len(idx))), has_aux=True)(
            model, *(inputs[i] for i in idx)
        )
        return outs, model_grads, tuple(input_grads)

    return run


@kept
def abstract_module(factory, dtype):
    """`(graphdef, state)` of `factory(dtype)` traced abstractly, once per factory and dtype."""
    from flax import nnx

    return nnx.split(nnx.eval_shape(lambda: factory(dtype)))


@kept
def built_module(factory, dtype):
    """`factory(dtype)` built concretely, in one compiled call."""
    from flax import nnx

    return nnx.jit(lambda: factory(dtype))
