"""Cases for elementwise activations."""

from __future__ import annotations

from ..registry import Case, Tensor, register


def _module(name):
    def torch_module(dtype, device):
        import torch_layers

        return getattr(torch_layers, name)()

    def jax_module(dtype):
        import jax_layers

        return getattr(jax_layers, name)()

    return torch_module, jax_module


def sigmoid_torch(x):
    import torch_layers

    return torch_layers.sigmoid(x)


def sigmoid_torch_ref(x):
    import torch

    return torch.sigmoid(x)


def sigmoid_jax(x):
    import jax_layers

    return jax_layers.sigmoid(x)


def sigmoid_jax_ref(x):
    import jax

    return jax.nn.sigmoid(x)


_torch_module, _jax_module = _module("Sigmoid")
register(
    Case(
        name="sigmoid",
        family="activation",
        inputs=(Tensor("input", (3, 1, 6)),),
        torch_fn=sigmoid_torch,
        torch_ref=sigmoid_torch_ref,
        jax_fn=sigmoid_jax,
        jax_ref=sigmoid_jax_ref,
        torch_module=_torch_module,
        jax_module=_jax_module,
    )
)
