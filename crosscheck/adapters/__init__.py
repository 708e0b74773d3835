"""One adapter per framework. Each imports its framework only when first used."""

from __future__ import annotations

import contextlib


def get(name: str):
    if name == "torch":
        from .torch_adapter import TorchAdapter

        return TorchAdapter()
    if name == "jax":
        from .jax_adapter import JaxAdapter, configure

        configure()  # before the adapter's first array
        return JaxAdapter()
    raise ValueError(f"Unknown framework: {name!r}")


@contextlib.contextmanager
def opened(device: str, programs: bool = False, order: str = ""):
    """`(torch, jax, device)`: both adapters on `device` ("auto" resolved to what is there),
    inside the settings a run needs (`precision.run_settings`), put back after the block. Every
    entry point (the CLI's run, `crosscheck.check`, `check_port`, the benchmark) opens them
    here, so that none leaves JAX configured for good. `programs`, `order`: see
    `JaxAdapter.use_programs`."""
    from ..options import resolve_device
    from ..precision import run_settings

    with run_settings():  # before the first JAX array: float64 arrays need x64 when made
        torch, jax = get("torch"), get("jax")
        device = resolve_device(device, torch, jax)
        torch.set_device(device)
        jax.set_device(device)
        jax.use_programs(programs, order)
        yield torch, jax, device


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
