"""The raw `custom_vjp` contract, checked abstractly: which `custom_vjp`s a forward calls, and
whether each one's `fwd` and `bwd` keep the rules (`bwd_contract`). Only shapes and dtypes
matter, so everything is traced with `jax.eval_shape`: nothing is compiled or run."""

from __future__ import annotations

from . import jax_adapter  # noqa: F401  (x64 and the XLA flags, before any array exists)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct))


def _abstract(tree):
    """`tree` with every array leaf replaced by its shape and dtype; other leaves kept."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if _is_array(x) else x, tree)


def _eval_abstract(fn, tree) -> None:
    """Trace `fn(tree)` with the array leaves of `tree` abstract and the rest as they are:
    the shapes and dtypes flow, nothing is compiled or run."""
    leaves, structure = jax.tree_util.tree_flatten(tree)
    arrays = [i for i, x in enumerate(leaves) if _is_array(x)]

    def traced(*values):
        full = list(leaves)
        for i, v in zip(arrays, values):
            full[i] = v
        fn(jax.tree_util.tree_unflatten(structure, full))
        return ()

    jax.eval_shape(traced, *(jax.ShapeDtypeStruct(leaves[i].shape, leaves[i].dtype) for i in arrays))


def record_custom_vjps(fn, args) -> list:
    """Every `(custom_vjp, args, kwargs)` that `fn(*args)` calls, with each array argument as
    its shape and dtype: `fn` is traced abstractly, not run."""
    cls = jax.custom_vjp
    original = cls.__call__
    calls = []

    def recording(self, *a, **kw):
        calls.append((self, _abstract(a), kw))
        return original(self, *a, **kw)

    cls.__call__ = recording
    try:
        _eval_abstract(lambda a: fn(*a), tuple(args))
    finally:
        cls.__call__ = original
    return calls


def bwd_contract(f, args, kwargs) -> list[str]:
    """Trace a custom_vjp's `fwd` and `bwd` on their own and list how they break the contract.

    Residuals must be arrays only (static values belong in `nondiff_argnums`, where jit keeps
    them static), and `bwd` must return one entry per differentiable argument, each `None` or
    of that argument's exact shape and dtype. Only shapes and dtypes matter here, so both are
    traced abstractly (`jax.eval_shape`): nothing is compiled or run.
    """
    from ..diagnose import shape_hint

    name = getattr(f, "__name__", None) or getattr(f.fun, "__name__", "custom_vjp")
    if kwargs:
        return [f"{name} was called with keyword arguments {sorted(kwargs)}; call custom_vjp functions positionally"]
    nondiff = tuple(f.nondiff_argnums)
    dyn = [a for i, a in enumerate(args) if i not in nondiff]
    problems = []

    def fwd_then_bwd(a):
        out, res = f.fwd(*a)
        problems.extend(
            f"{name} fwd residual of type {type(leaf).__name__} ({leaf!r}): residuals must be arrays; "
            "pass static values through nondiff_argnums"
            for leaf in jax.tree_util.tree_leaves(res)
            if not isinstance(leaf, (jax.Array, np.ndarray))
        )
        ct = jax.tree_util.tree_map(jnp.zeros_like, out)
        grads = f.bwd(*(a[i] for i in nondiff), res, ct)
        if not isinstance(grads, tuple) or len(grads) != len(dyn):
            n = len(grads) if isinstance(grads, tuple) else f"a {type(grads).__name__}, not a tuple"
            problems.append(f"{name} bwd returned {n} for {len(dyn)} differentiable arguments")
            return
        for i, (primal, g) in enumerate(zip(dyn, grads)):
            if g is None or primal is None:
                continue
            for la, lg in zip(jax.tree_util.tree_leaves(primal), jax.tree_util.tree_leaves(g)):
                if not _is_array(la) or not jnp.issubdtype(la.dtype, jnp.floating):
                    continue
                if tuple(lg.shape) != tuple(la.shape) or lg.dtype != la.dtype:
                    problems.append(f"{name} bwd gradient {i}: shape {tuple(lg.shape)} {lg.dtype}, argument has shape {tuple(la.shape)} {la.dtype}")
                    hint = shape_hint(tuple(la.shape), tuple(lg.shape))
                    if hint:
                        problems.append(f"Hint: {hint}")

    _eval_abstract(fwd_then_bwd, tuple(args))
    return problems
