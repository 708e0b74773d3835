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
