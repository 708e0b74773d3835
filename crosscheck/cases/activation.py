"""Cases for elementwise activations.

Every option is passed explicitly on both sides: the frameworks' defaults differ (`gelu`'s
`approximate`, `softplus`'s `threshold`). Kinked functions draw inputs away from their kinks.
"""

from __future__ import annotations

import functools
import importlib

from ..draw import away_from, normal
from ..registry import Case, Tensor, register

# Finite differences step about 6e-6; a margin of 0.1 also survives bfloat16 rounding.
MARGIN = 0.1

# The case's functions are module-level, their options bound by `functools.partial` in
# `_case`: they then pickle by reference, which closures do not. `name` is the function or
# module class in `module` (imported by name), `kw` its keyword arguments.
OURS = {"torch": "torch_layers.activation", "jax": "jax_layers.activation"}
TORCH_REFS = {"torch": "torch", "F": "torch.nn.functional"}


def _call(x, *, module, name, kw):
    return getattr(importlib.import_module(module), name)(x, **kw)


def _jax_ref(x, *, name, kw):
    import jax

    if name == "softplus":  # jax.nn.softplus has neither `beta` nor `threshold`
        beta, threshold = kw["beta"], kw["threshold"]
        return jax.numpy.where(beta * x > threshold, x, jax.nn.softplus(beta * x) / beta)
    return getattr(jax.nn, name)(x, **kw)


def _module(*dtype_device, module, name, kw):
    """`torch_module(dtype, device)` or `jax_module(dtype)`: the activations take neither."""
    return getattr(importlib.import_module(module), name)(**kw)


def _case(name, shape, torch_call, jax_call, torch_module, jax_module, draw=normal(), description=""):
    """`torch_call = (module, function, kwargs)` with module "torch" or "F"; `jax_call = (function, kwargs)`;
    the modules `(class, kwargs)`."""
    t_mod, t_name, t_kw = torch_call
    j_name, j_kw = jax_call
    return Case(
        name=name,
        family="activation",
        inputs=(Tensor("input", shape, draw=draw),),
        torch_fn=functools.partial(_call, module=OURS["torch"], name=t_name, kw=t_kw),
        torch_ref=functools.partial(_call, module=TORCH_REFS[t_mod], name=t_name, kw=t_kw),
        jax_fn=functools.partial(_call, module=OURS["jax"], name=j_name, kw=j_kw),
        jax_ref=functools.partial(_jax_ref, name=j_name, kw=j_kw),
        torch_module=functools.partial(_module, module=OURS["torch"], name=torch_module[0], kw=torch_module[1]),
        jax_module=functools.partial(_module, module=OURS["jax"], name=jax_module[0], kw=jax_module[1]),
        description=description or f"{shape}",
    )


def _bucket(name, args, kwargs, rank, n0, n1, n2, n3):
    return _case(name, (n0, n1, n2, n3)[:rank], *args, **kwargs)


def _register(name, shape, *args, **kwargs):
    """The case at its declared shape, then buckets of every rank 0..4 with sizes 1..5 (1..4
    and 1..2 for dims 2 and 3, so at most 200 elements); `_case`'s other arguments as given."""
    ranges = dict(rank=range(5), n0=range(1, 6), n1=range(1, 6), n2=range(1, 5), n3=range(1, 3))
    register(_case(name, shape, *args, **kwargs), functools.partial(_bucket, name, args, kwargs), ranges)


def _simple(name, shape, torch_mod, cls, draw=normal()):
    _register(name, shape, (torch_mod, name, {}), (name, {}), (cls, {}), (cls, {}), draw)


_simple("sigmoid", (3, 1, 6), "torch", "Sigmoid")
# Scale 2 reaches the saturated tails, where 1 - y^2 loses digits.
_simple("tanh", (2, 5, 1), "torch", "Tanh", draw=normal(2.0))
_simple("relu", (4, 1, 3), "F", "ReLU", draw=away_from((0.0,), MARGIN))
_simple("silu", (1, 3, 5), "F", "SiLU", draw=normal(3.0))

_register("leaky_relu", (3, 4, 1), ("F", "leaky_relu", {}), ("leaky_relu", {}), ("LeakyReLU", {}), ("LeakyReLU", {}),
          draw=away_from((0.0,), MARGIN), description="default slope 0.01")
_register("leaky_relu-slope", (2, 1, 5), ("F", "leaky_relu", {"negative_slope": 0.3}),
          ("leaky_relu", {"negative_slope": 0.3}), ("LeakyReLU", {"negative_slope": 0.3}),
          ("LeakyReLU", {"negative_slope": 0.3}), draw=away_from((0.0,), MARGIN), description="negative_slope=0.3")

_register("elu", (5, 1, 2), ("F", "elu", {}), ("elu", {}), ("ELU", {}), ("ELU", {}),
          draw=away_from((0.0,), MARGIN, scale=2.0), description="alpha=1")
_register("elu-alpha", (1, 4, 3), ("F", "elu", {"alpha": 0.7}), ("elu", {"alpha": 0.7}), ("ELU", {"alpha": 0.7}),
          ("ELU", {"alpha": 0.7}), draw=away_from((0.0,), MARGIN, scale=2.0), description="alpha=0.7")

_register("gelu", (3, 1, 4), ("F", "gelu", {"approximate": "none"}), ("gelu", {"approximate": False}),
          ("GELU", {"approximate": "none"}), ("GELU", {"approximate": False}), draw=normal(2.0),
          description="exact (erf)")
_register("gelu-tanh", (2, 3, 1), ("F", "gelu", {"approximate": "tanh"}), ("gelu", {"approximate": True}),
          ("GELU", {"approximate": "tanh"}), ("GELU", {"approximate": True}), draw=normal(2.0),
          description="tanh approximation")

_register("softplus", (4, 1, 5), ("F", "softplus", {}), ("softplus", {"beta": 1.0, "threshold": 20.0}),
          ("Softplus", {}), ("Softplus", {"beta": 1.0, "threshold": 20.0}), draw=normal(3.0),
          description="beta=1, threshold=20")
# beta x crosses the threshold 3 at x = 1.5: draws fall on both sides, never at the jump.
_register("softplus-beta", (3, 5, 1), ("F", "softplus", {"beta": 2.0, "threshold": 3.0}),
          ("softplus", {"beta": 2.0, "threshold": 3.0}), ("Softplus", {"beta": 2.0, "threshold": 3.0}),
          ("Softplus", {"beta": 2.0, "threshold": 3.0}), draw=away_from((1.5,), MARGIN, scale=2.0),
          description="beta=2, threshold=3, inputs on both sides of the switch")
