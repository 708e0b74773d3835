"""One adapter per framework. Each imports its framework only when first used."""

from __future__ import annotations


def get(name: str):
    if name == "torch":
        from .torch_adapter import TorchAdapter

        return TorchAdapter()
    if name == "jax":
        from .jax_adapter import JaxAdapter, configure

        configure()  # before the adapter's first array
        return JaxAdapter()
    raise ValueError(f"Unknown framework: {name!r}")


def call(module, xs: list, keywords=None):
    """`module(*positional, **by_keyword)`: input i goes by the keyword `keywords[i]` if any."""
    keywords = keywords or [None] * len(xs)
    return module(*(x for x, k in zip(xs, keywords) if k is None), **{k: x for x, k in zip(xs, keywords) if k})


def vjp_result(adapter, n: int, idx: list[int], outs, grads):
    """`(outs, grads, meta)` in numpy from a VJP over trials of `n` inputs: `grads` hold the
    gradients of inputs `idx`; every other is None. `meta[i]` is grad i's raw `(shape, dtype)`
    for one trial, before any conversion."""
    full = [None] * n
    for i, g in zip(idx, grads):
        full[i] = g
    meta = [None if g is None else (tuple(g.shape[1:]), adapter.dtype_name(g)) for g in full]
    return (
        tuple(adapter.to_numpy(o) for o in outs),
        [None if g is None else adapter.to_numpy(g) for g in full],
        meta,
    )
