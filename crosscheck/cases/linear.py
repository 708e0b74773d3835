"""Cases for `linear`: torch weight `(out, in)` <-> Flax kernel `(in, out)`."""

from __future__ import annotations

from ..layout import TRANSPOSE
from ..registry import Case, Tensor, register


def torch_fn(x, weight, bias=None):
    import torch_layers

    return torch_layers.linear(x, weight, bias)


def torch_ref(x, weight, bias=None):
    import torch.nn.functional as F

    return F.linear(x, weight, bias)


def jax_fn(x, kernel, bias=None):
    import jax_layers

    return jax_layers.linear(x, kernel, bias)


def jax_ref(x, kernel, bias=None):
    import jax

    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    return y if bias is None else y + bias


def _modules(in_features, out_features, bias):
    def torch_module(dtype, device):
        import torch_layers

        return torch_layers.Linear(in_features, out_features, bias=bias, dtype=dtype, device=device)

    def jax_module(dtype):
        from flax import nnx

        import jax_layers

        return jax_layers.Linear(
            in_features, out_features, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0)
        )

    return torch_module, jax_module


def linear_params(in_features: int, out_features: int, bias: bool = True) -> tuple[Tensor, ...]:
    """torch.nn.Linear's parameters, with their place in flax.nnx.Linear."""
    weight = Tensor("weight", (out_features, in_features), layout=TRANSPOSE, jax_name="kernel")
    return (weight, Tensor("bias", (out_features,), jax_name="bias")) if bias else (weight,)


def _case(name, batch, in_features, out_features, bias=True, noncontiguous=False):
    torch_module, jax_module = _modules(in_features, out_features, bias)
    return Case(
        name=name,
        family="linear",
        inputs=(Tensor("input", (*batch, in_features)),),
        params=linear_params(in_features, out_features, bias),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        noncontiguous=noncontiguous,
        description=f"x {(*batch, in_features)} -> {(*batch, out_features)}, bias={bias}"
        + (", strided inputs" if noncontiguous else ""),
    )


def _register(name, batch, in_features, out_features, bias=True, noncontiguous=False):
    """The case at its declared shapes, with every batch rank (0..2), batch size (1..3) and
    feature size (1..8) as further shape buckets."""

    def build(leading, batch, in_features, out_features):
        return _case(name, tuple(batch + i for i in range(leading)), in_features, out_features, bias, noncontiguous)

    ranges = dict(leading=range(3), batch=range(1, 4), in_features=range(1, 9), out_features=range(1, 9))
    register(_case(name, batch, in_features, out_features, bias, noncontiguous), build, ranges)


# Two leading batch dims, one of size 1: a bias gradient that forgets to sum hides there.
_register("linear", (4, 1), 7, 5)
_register("linear-nobias", (3,), 6, 2, bias=False)
_register("linear-unbatched", (), 5, 3)
_register("linear-strided", (2, 3), 4, 6, noncontiguous=True)
