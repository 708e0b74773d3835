"""The program cache's entries on disk: where one lies (its key), and how it is written.

An entry's name is the sha256 of its key: the program's name, its function's `identity`, the
structure, shapes, dtypes and placement of its arguments, and the environment (`environment`).
An entry is written whole or not at all, by a pickler that also takes the callables JAX makes
unpicklable (`_Pickler`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import sys
import types

import jax

# Kept in place of a value that does not pickle, so that later runs know not to try.
UNKEPT = "<not kept: does not pickle>"


def environment() -> str:
    """The versions, configuration and devices of JAX, and `sys.path`."""
    import jaxlib

    config = sorted((k, repr(v)) for k, v in getattr(jax.config, "values", {}).items() if "cache" not in k)
    devices = [(d.platform, d.device_kind, d.id) for d in jax.devices()]
    # Where imports are looked for: another checkout of the same layers, with files of its
    # own, is another program even where the files that this one ran are unchanged.
    path = [os.path.realpath(p or os.curdir) for p in sys.path]
    return repr((sys.version, jax.__version__, jaxlib.__version__, os.environ.get("XLA_FLAGS", ""), config, devices, path))


def signature(args) -> str:
    """The structure, shapes, dtypes and placement of `args`."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    return repr((str(tree), [(tuple(x.shape), str(x.dtype), str(getattr(x, "sharding", ""))) for x in leaves]))


def entry(folder: str, key: str) -> str:
    """The path of the entry for `key` in `folder`."""
    return os.path.join(folder, hashlib.sha256(key.encode()).hexdigest())


def _named(module: str, qualname: str):
    """The object that `module` holds at `qualname`."""
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class _Pickler(pickle.Pickler):
    """Pickles a callable that its module holds under its own name (`jnp.tanh`, `jax.nn.relu`:
    jitted or custom_jvp objects, which pickle refuses) as that name, as pickle does for a plain
    function. A module built with such a function as its activation is then kept between runs
    instead of rebuilt in each (docs/bench.md, "Measurements moved here from code comments")."""

    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) or not callable(obj):
            return NotImplemented
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not (isinstance(module, str) and isinstance(qualname, str)):
            return NotImplemented
        try:
            found = _named(module, qualname)
        except Exception:  # not importable under that name: pickled as usual, or refused
            return NotImplemented
        return (_named, (module, qualname)) if found is obj else NotImplemented


def write(folder: str, path: str, value) -> bool:
    """Write `value` to `path` in `folder`, whole or not at all; False where it does not pickle."""
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            _Pickler(f).dump(value)
    except (pickle.PicklingError, AttributeError, TypeError):  # a class defined in a function
        os.remove(tmp)
        return False
    os.replace(tmp, path)  # whole or absent, even with several processes writing
    return True
