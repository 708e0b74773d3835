"""How sensitive each element of a result is to rounding: Monte Carlo arithmetic, linearised.

A program's every intermediate result `z` is replaced by `z (1 + e xi)`, `xi` drawn uniform in
[-1, 1] afresh for each element of each intermediate, and the derivative with respect to `e` at
`e = 0` is taken (one forward-mode pass, in float64). That derivative, `sum_z (dy/dz) z xi`, is
the first-order rounding error of `y` when every intermediate is rounded with a relative error
`xi` of one unit roundoff: its spread over a few draws of `xi` is the element's sensitivity to
the dtype's rounding. It sees what perturbing the inputs cannot: `0.5 x (1 + tanh(a))` at
x = -3 is small through cancellation, and its error comes from rounding `tanh(a)` near -1.

Two kinds of rounding are drawn apart, so that the caller can weigh each by its own unit
roundoff: each result rounded to the dtype under test (`ROUND`), and the terms of each sum
(`reduce_sum`, `dot_general`, convolutions, ...) perturbed once more, for the rounding of the
running sum (`ACCUMULATE`): frameworks accumulate low-precision sums in float32, so those terms
are rounded at float32's unit roundoff, not at the dtype's.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jex_core

ROUND, ACCUMULATE = 0, 1

# Primitives whose results are exact (they move, select or compare values without rounding
# them): perturbing their results would count a rounding that does not happen.
EXACT = frozenset({
    "abs", "broadcast_in_dim", "concatenate", "convert_element_type", "copy", "copy_p", "dynamic_slice",
    "dynamic_update_slice", "eq", "expand_dims", "gather", "ge", "gt", "iota", "le", "lt", "max", "min", "ne",
    "neg", "not", "and", "or", "pad", "reduce_max", "reduce_min", "argmax", "argmin", "reduce_window_max",
    "reduce_window_min", "reshape", "rev", "select_n", "sign", "slice", "split", "squeeze", "stack", "unstack",
    "stop_gradient", "transpose", "floor", "ceil", "round", "clamp", "sort", "is_finite",
})

# Sums, and which of their operands hold the terms being summed.
ACCUMULATING = {
    "reduce_sum": (0,), "dot_general": (0,), "conv_general_dilated": (0,), "reduce_window_sum": (0,),
    "scatter-add": (2,), "scatter_add": (2,), "select_and_scatter_add": (0,), "cumsum": (0,),
}


def _noise(shape, counter: int, draw):
    """Pseudo-random values uniform in [-1, 1], one per element, different for each
    `counter` and `draw`: a few elementwise ops, where a counter-based generator (threefry)
    per intermediate would multiply the size of the compiled program."""
    n = math.prod(shape)
    i = lax.iota(jnp.float64, max(n, 1))[:n].reshape(shape)
    x = jnp.sin(i * 12.9898 + (counter % 9973) * 78.233 + draw * 37.719) * 43758.5453
    return 2.0 * (x - jnp.floor(x)) - 1.0


def _inner(eqn):
    """The (jaxpr, consts) an eqn calls (jit, custom_jvp_call, custom_vjp_call, remat), to be
    evaluated inline so that its intermediates are perturbed too; None for any other eqn."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is None:
            continue
        jaxpr, consts = (sub.jaxpr, sub.consts) if hasattr(sub, "consts") else (sub, ())
        if hasattr(jaxpr, "eqns") and len(jaxpr.invars) == len(eqn.invars):
            return jaxpr, consts
    return None


def _floating(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


class _Perturbed:
    """Evaluates a jaxpr with every rounded intermediate perturbed by `eps[kind] * xi`."""

    def __init__(self, eps, draw):
        self.eps, self.draw, self.counter = eps, draw, 0

    def perturb(self, x, kind: int):
        if not _floating(x):
            return x
        self.counter += 1
        return x * (1.0 + self.eps[kind] * _noise(jnp.shape(x), self.counter, self.draw))

    def eval(self, jaxpr, consts, args):
        env = {}

        def read(v):
            return v.val if isinstance(v, jex_core.Literal) else env[v]

        env.update(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))
        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            name = eqn.primitive.name
            inner = _inner(eqn)
            if inner is not None:
                outs = self.eval(*inner, invals)
            else:
                for i in ACCUMULATING.get(name, ()):
                    invals[i] = self.perturb(invals[i], ACCUMULATE)
                outs = eqn.primitive.bind(*invals, **eqn.params)
                outs = list(outs) if eqn.primitive.multiple_results else [outs]
                if name not in EXACT:
                    outs = [self.perturb(o, ROUND) for o in outs]
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]


def spread(f, args: tuple, draws: int):
    """Per element of `f(*args)` (a pytree of float arrays): the root-mean-square over `draws`
    draws of its first-order rounding error, for each kind of rounding, in units of that
    kind's unit roundoff. Returns a pytree like `f`'s output whose leaves have a leading axis
    of 2 (`ROUND`, `ACCUMULATE`)."""
    flat, in_tree = jax.tree_util.tree_flatten(args)
    closed = jax.make_jaxpr(lambda *leaves: f(*jax.tree_util.tree_unflatten(in_tree, leaves)))(*flat)
    out_tree = jax.tree_util.tree_structure(jax.eval_shape(lambda *leaves: f(*jax.tree_util.tree_unflatten(in_tree, leaves)), *flat))

    def errors(draw):
        run = lambda eps: _Perturbed(eps, draw).eval(closed.jaxpr, closed.consts, flat)  # noqa: E731
        return jax.jacfwd(run)(jnp.zeros(2, jnp.float64))  # each leaf: (*shape, 2)

    per_draw = jax.vmap(errors)(jnp.arange(draws, dtype=jnp.float64))
    rms = [jnp.moveaxis(jnp.sqrt(jnp.mean(jnp.square(t), axis=0)), -1, 0) for t in per_draw]
    return jax.tree_util.tree_unflatten(out_tree, rms)


@functools.lru_cache(maxsize=None)
def spread_body(per_trial, draws: int):
    """`per_trial`'s rounding spread (`spread`), over the trial axis of every argument."""
    return jax.vmap(lambda *args: spread(per_trial, args, draws))
