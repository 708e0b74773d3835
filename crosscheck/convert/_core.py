"""The conversion machinery; the per-family maps live beside it (`linear.py`, ...)."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..layout import Layout

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class ParamMap:
    """Torch names -> nnx attribute paths ("kernel", "ii.kernel") and back, on numpy arrays.

    `to_torch` carries weights back (a right inverse of `to_nnx`). Gradients go back through
    the adjoint of `to_nnx`, which is the same map whenever `to_nnx` only moves and permutes
    entries; a map that sums several torch tensors into one nnx tensor (LSTM biases) gives
    its adjoint as `grads_to_torch`: every summand gets the gradient of the sum.
    """

    to_nnx: Callable[[Arrays], Arrays]
    to_torch: Callable[[Arrays], Arrays]
    grads_to_torch: Callable[[Arrays], Arrays] | None = None


def per_tensor(*entries: tuple[str, str, Layout]) -> ParamMap:
    """A map that moves each `(torch_name, nnx_path, layout)` on its own."""

    def to_nnx(state):
        return {path: lay.to_jax(np.asarray(state[name])[None])[0] for name, path, lay in entries if name in state}

    def to_torch(params):
        return {name: lay.from_jax(np.asarray(params[path])[None])[0] for name, path, lay in entries if path in params}

    return ParamMap(to_nnx, to_torch)


_MAPS: dict[str, Callable[..., ParamMap]] = {}


def register_param_map(torch_class_name: str):
    """Decorator: `fn(torch_module) -> ParamMap` for modules of that class name."""

    def deco(fn):
        _MAPS[torch_class_name] = fn
        return fn

    return deco


def _load():
    from .. import convert

    for info in pkgutil.iter_modules(convert.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{convert.__name__}.{info.name}")


def param_map(torch_module) -> ParamMap:
    _load()
    name = type(torch_module).__name__
    if name not in _MAPS:
        raise ValueError(f"No weight conversion for torch module {name!r}; known: {', '.join(sorted(_MAPS))}")
    return _MAPS[name](torch_module)


def _nnx_set(module, path: str, value, dtype=None) -> None:
    """Set the variable at `path`, cast to `dtype` (default: the variable's own dtype)."""
    import jax
    import jax.numpy as jnp

    *parents, last = path.split(".")
    obj = module
    for p in parents:
        obj = obj[int(p)] if p.isdigit() else getattr(obj, p)
    var = obj[int(last)] if last.isdigit() else getattr(obj, last)
    if var is None or not hasattr(var, "get_value"):
        raise ValueError(f"nnx module {type(module).__name__} has no parameter at `{path}`")
    old = var.get_value()
    if tuple(old.shape) != tuple(value.shape):
        raise ValueError(f"`{path}` has shape {tuple(old.shape)}, the torch weight gives {tuple(value.shape)}")
    # Cast in numpy and copy to the device: no JAX op runs (an eager op compiles a program).
    target = jnp.dtype(old.dtype if dtype is None else dtype)
    var.set_value(jax.device_put(np.asarray(value).astype(target)))


def flatten(tree: dict, prefix: str = "") -> dict:
    """`{"ii": {"kernel": a}}` -> `{"ii.kernel": a}`, the paths `ParamMap` speaks."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _nnx_flat(module) -> Arrays:
    from flax import nnx

    def as_numpy(v):
        v = np.asarray(v)
        return v.astype(np.float64) if v.dtype.kind == "f" or v.dtype.name == "bfloat16" else v

    return {k: as_numpy(v) for k, v in flatten(nnx.to_pure_dict(nnx.state(module))).items()}


def state_dict_to_nnx(state_dict: dict, torch_module, nnx_module) -> None:
    """Load a torch `state_dict` (for a module like `torch_module`) into `nnx_module`."""
    arrays = {k: v.detach().cpu().double().numpy() if v.is_floating_point() else v.cpu().numpy() for k, v in state_dict.items()}
    for path, value in param_map(torch_module).to_nnx(arrays).items():
        _nnx_set(nnx_module, path, value)


def torch_to_nnx(torch_module, nnx_module) -> None:
    """Copy `torch_module`'s parameters and buffers into `nnx_module` (in place)."""
    state_dict_to_nnx(torch_module.state_dict(), torch_module, nnx_module)


def nnx_to_torch(nnx_module, torch_module) -> None:
    """Copy `nnx_module`'s parameters into `torch_module` (in place, keeping its dtype)."""
    import torch

    state = param_map(torch_module).to_torch(_nnx_flat(nnx_module))
    own = torch_module.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"torch module {type(torch_module).__name__} has no entries {unknown}")
    # A layout built from views (np.flip) has negative strides, which torch refuses.
    torch_module.load_state_dict(
        {k: torch.as_tensor(np.ascontiguousarray(v), dtype=own[k].dtype) for k, v in state.items()}, strict=False
    )
