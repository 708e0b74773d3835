"""How sensitive each element of a result is to rounding: Monte Carlo arithmetic, linearised.

A program's every intermediate result `z` is replaced by `z (1 + e xi)`, `xi` drawn uniform in
[-1, 1] afresh for each element of each intermediate, and the derivative with respect to `e` at
`e = 0` is taken (one forward-mode pass, in float64). That derivative, `sum_z (dy/dz) z xi`, is
the first-order rounding error of `y` when every intermediate is rounded with a relative error
`xi` of one unit roundoff: its spread over a few draws of `xi` is the element's sensitivity to
the dtype's rounding. It sees what perturbing the inputs cannot: `0.5 x (1 + tanh(a))` at
x = -3 is small through cancellation, and its error comes from rounding `tanh(a)` near -1.

Two kinds of rounding are drawn apart, each weighed by its own unit roundoff: each result
rounded to the dtype under test (`ROUND`), and the terms of each sum
(`reduce_sum`, `dot_general`, convolutions, ...) perturbed once more, for the rounding of the
running sum (`ACCUMULATE`): frameworks accumulate low-precision sums in float32, so those terms
are rounded at float32's unit roundoff, not at the dtype's.

A running sum of `n` terms is rounded after each addition: in a sum accumulated one term after
another, term `i` is carried through `n - i + 1` of those roundings, `(n + 1) / 2` on average.
Each term's perturbation is therefore drawn `sqrt((n + 1) / 2)` times larger (`compare.sum_order`),
the spread that recursive summation gives terms of random sign. Blocked and pairwise sums, which
BLAS, XLA and the GPU libraries use, err less; perturbing each term once, as if the sum were
rounded only at the end, erred too little: a correct float32 linear layer of 256 inputs failed
torch vs JAX at 1.4 times its allowance (docs/tolerances.md, "Long sums").

A result below the dtype's smallest normal number is rounded to a fixed grid (subnormals): its
error is that of the smallest normal number, not `u |z|` (`compare.SMALLEST_NORMAL`).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import jax.numpy as jnp
from jax.extend import core as jex_core

from ..compare import sum_order
from .jax_programs import kept

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

# Sums: which operand holds the terms being summed, and at which unit roundoff the running sum
# is rounded. Matrix products and plain reductions accumulate low-precision terms in float32
# (`ACCUMULATE`). Windowed sums, scatters and convolutions may accumulate in the dtype itself
# (`ROUND`): torch's float16 convolution backward on CPU, and XLA's float16 max-pool backward
# (select_and_scatter_add) and bfloat16 average pool (reduce_window_sum), erred by 6 to 14
# units of float16 / bfloat16 on elements where their terms cancel.
ACCUMULATING = {
    "reduce_sum": (0, ACCUMULATE), "dot_general": (0, ACCUMULATE), "cumsum": (0, ACCUMULATE),
    "conv_general_dilated": (0, ROUND), "reduce_window_sum": (0, ROUND), "scatter-add": (2, ROUND),
    "scatter_add": (2, ROUND), "select_and_scatter_add": (0, ROUND),
}


# The draws of `xi`: one buffer of uniform values per draw, drawn once in numpy and passed in as
# an argument; each intermediate reads its own window of it. Generating the values inside the
# program (a hash or a counter-based generator per intermediate) made the compiled program
# several times larger than the one it measures.
NOISE_LENGTH = 1 << 16
NOISE_STRIDE = 4099  # a prime: consecutive intermediates read windows that do not line up


def noise(draws: int) -> np.ndarray:
    """`(draws, NOISE_LENGTH)` values uniform in [-1, 1], the same in every run."""
    return np.random.default_rng(0x5EED).uniform(-1.0, 1.0, (draws, NOISE_LENGTH))


def _window(buffers, shape, counter: int):
    """`shape`'s worth of each draw's noise in `buffers` (`(draws, NOISE_LENGTH)`), starting
    at a place of its own: `(draws, *shape)`."""
    n = math.prod(shape)
    if n > NOISE_LENGTH // 2:
        flat = jnp.tile(jnp.roll(buffers, counter, axis=1), (1, -(-n // NOISE_LENGTH)))[:, :n]
    else:
        start = (counter * NOISE_STRIDE) % (NOISE_LENGTH - n)
        flat = buffers[:, start:start + n]
    return flat.reshape((buffers.shape[0], *shape))


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


class _Rounding:
    """Evaluates a jaxpr forward, carrying beside each value its first-order rounding error
    for each draw (`(draws, *shape)`, or None where no rounding has reached it yet): the
    tangent of the value when every rounded intermediate `z` is perturbed to `z (1 + u xi)`.
    Carrying the tangents by hand, rather than differentiating a perturbed program, keeps the
    primal computation out of the draws and leaves out the tangents that are known zeros."""

    def __init__(self, units, buffers):
        """`units`: `compare.rounding_units`, the unit roundoffs and smallest normal numbers."""
        self.scaled = (units[ROUND] * buffers, units[ACCUMULATE] * buffers)
        self.smallest = (units[2 + ROUND], units[2 + ACCUMULATE])
        self.counter = 0

    def rounding(self, z, kind: int):
        self.counter += 1
        # An infinite value (a masked logit) is not rounded: it stays where it is. A subnormal
        # one errs as the smallest normal number does; an exact zero not at all.
        size = jnp.sign(z) * jnp.maximum(jnp.abs(z), self.smallest[kind])
        return jnp.where(jnp.isfinite(z), size, 0.0)[None] * _window(self.scaled[kind], jnp.shape(z), self.counter)

    def add(self, t, z, kind: int, scale: float = 1.0):
        if not _floating(z):
            return t
        r = self.rounding(z, kind)
        r = r if scale == 1.0 else r * scale
        return r if t is None else t + r

    def eval(self, jaxpr, consts, args, tangents):
        env, tan = {}, {}

        def read(v):
            return (v.val, None) if isinstance(v, jex_core.Literal) else (env[v], tan.get(v))

        env.update(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))
        tan.update((v, t) for v, t in zip(jaxpr.invars, tangents) if t is not None)
        for eqn in jaxpr.eqns:
            invals, tins = map(list, zip(*map(read, eqn.invars))) if eqn.invars else ([], [])
            inner = _inner(eqn)
            if inner is not None:
                outs, touts = self.eval(*inner, invals, tins)
            else:
                name = eqn.primitive.name
                if name in ACCUMULATING:
                    i, kind = ACCUMULATING[name]
                    tins[i] = self.add(tins[i], invals[i], kind, sum_order(_terms(eqn, invals)))
                outs, touts = _apply(eqn, invals, tins)
                if name not in EXACT:
                    touts = [self.add(t, z, ROUND) for t, z in zip(touts, outs)]
            env.update(zip(eqn.outvars, outs))
            tan.update(zip(eqn.outvars, touts))
        return map(list, zip(*map(read, jaxpr.outvars))) if jaxpr.outvars else ([], [])


def _terms(eqn, invals) -> int:
    """How many terms each result of the sum `eqn` adds up (1 where that varies: scatters)."""
    name, shape = eqn.primitive.name, jnp.shape(invals[0])
    if name == "reduce_sum":
        return math.prod(shape[a] for a in eqn.params["axes"])
    if name == "dot_general":
        return math.prod(shape[a] for a in eqn.params["dimension_numbers"][0][0])
    if name == "cumsum":
        return shape[eqn.params["axis"]]
    if name == "conv_general_dilated":
        spec, rhs = eqn.params["dimension_numbers"].rhs_spec, jnp.shape(invals[1])
        return math.prod(rhs[a] for a in spec[1:])
    if name == "reduce_window_sum":
        return math.prod(eqn.params["window_dimensions"])
    return 1


def _apply(eqn, invals, tins):
    """`eqn`'s outputs, and their tangents per draw from the tangents `tins` (None: zero)."""
    bind = lambda *xs: eqn.primitive.bind(*xs, **eqn.params)  # noqa: E731
    outs = bind(*invals)
    outs = list(outs) if eqn.primitive.multiple_results else [outs]
    moving = [i for i, t in enumerate(tins) if t is not None]
    if not moving:
        return outs, [None] * len(outs)

    def tangent(*ts):
        def along(*xs):
            full = list(invals)
            for i, x in zip(moving, xs):
                full[i] = x
            return bind(*full)

        return jax.jvp(along, [invals[i] for i in moving], list(ts))[1]

    touts = jax.vmap(tangent)(*[tins[i] for i in moving])
    touts = list(touts) if eqn.primitive.multiple_results else [touts]
    return outs, [t if _floating(z) else None for t, z in zip(touts, outs)]


def spread(f, args: tuple, units, buffers):
    """Per element of `f(*args)` (a pytree of float arrays): the root-mean-square, over the
    draws in `buffers` (`noise`), of its first-order rounding error when each result is
    rounded with unit roundoff `units[ROUND]` and each sum's terms with `units[ACCUMULATE]`.
    Returns a pytree like `f`'s output."""
    flat, in_tree = jax.tree_util.tree_flatten(args)
    whole = lambda *leaves: f(*jax.tree_util.tree_unflatten(in_tree, leaves))  # noqa: E731
    closed = jax.make_jaxpr(whole)(*flat)
    out_tree = jax.tree_util.tree_structure(jax.eval_shape(whole, *flat))

    _, errors = _Rounding(units, buffers).eval(closed.jaxpr, closed.consts, flat, [None] * len(flat))
    rms = [jnp.zeros(jnp.shape(o)) if t is None else jnp.sqrt(jnp.mean(jnp.square(t), axis=0))
           for t, o in zip(errors, jax.tree_util.tree_leaves(jax.eval_shape(whole, *flat)))]
    return jax.tree_util.tree_unflatten(out_tree, rms)


@kept
def spread_body(per_trial):
    """`(units, buffers, *args) ->` `per_trial`'s rounding spread (`spread`), over the trial
    axis of every one of `args`."""
    return lambda units, buffers, *args: jax.vmap(lambda *a: spread(per_trial, a, units, buffers))(*args)
