"""Cases for shape layers."""

from __future__ import annotations

from ..registry import Case, Tensor, register


def _reshape_case(name, in_shape, shape):
    def torch_fn(x):
        import torch_layers

        return torch_layers.reshape(x, shape)

    def torch_ref(x):
        import torch

        return torch.reshape(x, shape)

    def jax_fn(x):
        import jax_layers

        return jax_layers.reshape(x, shape)

    def jax_ref(x):
        import jax.numpy as jnp

        return jnp.reshape(x, shape)

    def torch_module(dtype, device):
        import torch_layers

        return torch_layers.Reshape(*shape)

    def jax_module(dtype):
        import jax_layers

        return jax_layers.Reshape(*shape)

    return Case(
        name=name,
        family="shape",
        inputs=(Tensor("input", in_shape),),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        description=f"{in_shape} -> {shape}",
    )


register(_reshape_case("reshape", (2, 3, 4), (4, -1, 1)))
