"""The conversion machinery; the per-family maps live beside it (`linear.py`, ...)."""

from __future__ import annotations

import functools
import importlib
import inspect
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
    `torch_only` names torch entries that have no nnx counterpart by design (BatchNorm's
    `num_batches_tracked`): a whole-model conversion counts them as accounted for and leaves
    them as the torch model holds them.
    """

    to_nnx: Callable[[Arrays], Arrays]
    to_torch: Callable[[Arrays], Arrays]
    grads_to_torch: Callable[[Arrays], Arrays] | None = None
    torch_only: tuple[str, ...] = ()


def _entries_to_nnx(entries, state):
    return {path: lay.to_jax(np.asarray(state[name])[None])[0] for name, path, lay in entries if name in state}


def _entries_to_torch(entries, params):
    return {name: lay.from_jax(np.asarray(params[path])[None])[0] for name, path, lay in entries if path in params}


def per_tensor(*entries: tuple[str, str, Layout], torch_only: tuple[str, ...] = ()) -> ParamMap:
    """A map that moves each `(torch_name, nnx_path, layout)` on its own. Its functions are
    module-level ones bound by `functools.partial` (as every map's here), so a map pickles."""
    return ParamMap(functools.partial(_entries_to_nnx, entries), functools.partial(_entries_to_torch, entries),
                    torch_only=torch_only)


_MAPS: dict[str, Callable[..., ParamMap]] = {}


def register_param_map(torch_class_name: str):
    """Decorator: `fn(torch_module) -> ParamMap` for modules of that class name; a `fn` with a
    second parameter is also given the nnx module it converts into (or None), for maps that
    depend on how the nnx side was built (`transpose_kernel`, a recurrent bias)."""

    def deco(fn):
        _MAPS[torch_class_name] = fn
        return fn

    return deco


def _load():
    from .. import convert

    for info in pkgutil.iter_modules(convert.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{convert.__name__}.{info.name}")


def has_param_map(torch_module) -> bool:
    _load()
    return type(torch_module).__name__ in _MAPS


def known_maps() -> str:
    _load()
    return ", ".join(sorted(_MAPS))


def param_map(torch_module, nnx_module=None) -> ParamMap:
    """The map for `torch_module`, converting into `nnx_module` where the map depends on it."""
    _load()
    name = type(torch_module).__name__
    if name not in _MAPS:
        raise ValueError(f"No weight conversion for torch module {name!r}; known: {known_maps()}")
    fn = _MAPS[name]
    return fn(torch_module, nnx_module) if len(inspect.signature(fn).parameters) > 1 else fn(torch_module)


def _child(obj, name: str):
    """`obj.name`, or `obj[name]` in an nnx list (an index) or dict (a key)."""
    if name.isdigit():
        try:
            return obj[int(name)]
        except (TypeError, KeyError, IndexError):
            pass
    try:
        return getattr(obj, name)
    except AttributeError:
        return obj[name]


def _nnx_set(module, path: str, value, dtype=None) -> None:
    """Set the variable at `path`, cast to `dtype` (default: the variable's own dtype)."""
    import jax
    import jax.numpy as jnp

    var = module
    try:
        for p in path.split("."):
            var = _child(var, p)
    except (AttributeError, KeyError, IndexError, TypeError):
        var = None
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
    """Every variable of `module` but its RNG state, by path; floats as float64 (exactly)."""
    from flax import nnx

    def as_numpy(v):
        v = np.asarray(v)
        return v.astype(np.float64) if v.dtype.kind == "f" or v.dtype.name == "bfloat16" else v

    return {k: as_numpy(v) for k, v in flatten(nnx.to_pure_dict(nnx.state(module, nnx.Not(nnx.RngState)))).items()}
