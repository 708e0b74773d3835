"""One adapter per framework. Each imports its framework only when first used."""

from __future__ import annotations


def get(name: str):
    if name == "torch":
        from .torch_adapter import TorchAdapter

        return TorchAdapter()
    if name == "jax":
        from .jax_adapter import JaxAdapter

        return JaxAdapter()
    raise ValueError(f"Unknown framework: {name!r}")


def call(module, xs: list, keywords=None):
    """`module(*positional, **by_keyword)`: input i goes by the keyword `keywords[i]` if any."""
    keywords = keywords or [None] * len(xs)
    return module(*(x for x, k in zip(xs, keywords) if k is None), **{k: x for x, k in zip(xs, keywords) if k})
