"""The JAX side: numpy in, numpy out; all trials of a program in one `jit(vmap(...))` call.

Importing this module changes no global configuration. A run needs float64 and the persistent
compilation cache: `jax_config.configured()` sets them for the run and puts them back after it.
`configure()`, which `adapters.get("jax")` calls, sets them for good where no run has set them
(inside a run it finds them set and changes nothing). It leaves `XLA_FLAGS` alone: its compile
options travel with each program (`_jit`).
"""

from __future__ import annotations

import os

import jax

from .jax_config import cache_folder as _cache_folder, configure as configure  # noqa: F401


import functools  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from . import jax_programs as programs  # noqa: E402
from . import jax_requests as requests  # noqa: E402
from .jax_memory import MapBudget  # noqa: E402
from .jax_requests import Request  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

DTYPES = {"float64": np.float64, "float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
MANY_TRIALS = programs.MANY_TRIALS


@functools.lru_cache(maxsize=None)
def _trial_sharding(devices: tuple, whole: bool = False):
    """Split along the trial axis over `devices`, or (`whole`) copied onto each."""
    mesh = jax.sharding.Mesh(np.array(devices), ("trials",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec() if whole else jax.sharding.PartitionSpec("trials"))


@dataclass
class _Off:
    """The program cache turned off: every program compiled, nothing kept between runs (the
    same methods as `program_cache.ProgramCache`, which a JAX without
    `jax.experimental.serialize_executable` cannot import)."""

    order: str = ""

    def new_case(self) -> None:
        pass

    def call(self, jitted, name, fn, args: tuple, device, extra=()):
        return jitted(*args)

    def remember(self, name, fn, args: tuple, thunk):
        return thunk()

    def build(self, key, thunk, keep: bool = False):
        return thunk()

    def files(self, key):
        return ()

    def release(self) -> None:
        pass


OFF = _Off()


class JaxAdapter:
    """Arrays on the run's devices, and requests (`jax_requests`) run as compiled programs
    (`jax_programs`): through the program cache when it is on, all dropped when the memory
    budget (`jax_memory`) is spent."""

    framework_name = "jax"

    def __init__(self):
        self.set_device("cpu")
        self.budget = MapBudget()
        self.programs = OFF

    # -- arrays and devices ---------------------------------------------------------------------
    @staticmethod
    def has_gpu() -> bool:
        try:
            return len(jax.devices("gpu")) > 0
        except RuntimeError:
            return False

    def set_device(self, device: str) -> None:
        self.devices = tuple(jax.devices("gpu" if device == "cuda" else "cpu"))
        self.device = self.devices[0]

    def placement(self, trials: int, whole: bool = False):
        """Where an array of `trials` trials goes: split along the trial axis over every
        device of the platform when they divide it evenly (`jit(vmap)` then runs each share
        where it lies, with no communication: trials are independent), else one device.
        `whole`: an array without a trial axis, used beside such arrays in one program: a
        copy on each of the same devices, since one program takes arrays of one device set."""
        if len(self.devices) > 1 and trials % len(self.devices) == 0:
            return _trial_sharding(self.devices, whole)
        return self.device

    @staticmethod
    def version() -> str:
        return jax.__version__

    @staticmethod
    def jax_dtype(dtype: str):
        return jnp.dtype(DTYPES[dtype])

    def from_numpy(self, a: np.ndarray, kind: str, dtype: str, batched: bool = True, beside: int | None = None):
        """An array on the device; `batched` (a leading trial axis) spreads it over devices.
        An unbatched array `beside` arrays of that many trials goes where they go (`placement`)."""
        if kind == "float":
            a = np.asarray(a, dtype=np.float64).astype(DTYPES[dtype])
        a = np.asarray(a)
        if batched and a.ndim:
            return jax.device_put(a, self.placement(a.shape[0]))
        return jax.device_put(a, self.device if beside is None else self.placement(beside, whole=True))

    @staticmethod
    def to_numpy(x) -> np.ndarray:
        x = np.asarray(x)
        return x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) or x.dtype == ml_dtypes.bfloat16 else x

    @staticmethod
    def dtype_name(x) -> str:
        return str(jnp.dtype(x.dtype))

    # -- what is kept: the program cache, and the programs in memory ------------------------------
    def use_programs(self, on: bool, order: str = "") -> None:
        """Keep compiled programs between runs (`program_cache`), in `programs/` of the cache
        folder, or stop. Only for cases exactly as registered: a function replaced while the
        process runs would find its original's program. `order` names the order the programs
        run in, where it is not the whole registry's (a shard's: see ProgramCache.order)."""
        folder = _cache_folder()
        if not on:
            self.programs = OFF
        elif folder and self.programs is OFF:
            try:
                from .program_cache import ProgramCache
            except ImportError:  # a JAX without `jax.experimental.serialize_executable`
                return
            self.programs = ProgramCache(os.path.join(folder, "programs"))
        if self.programs is not OFF:
            self.programs.order = order

    def new_case(self) -> None:
        """A case run starts (see ProgramCache.new_case)."""
        self.programs.new_case()

    def remember(self, name: str | None, fn, args: tuple, thunk):
        """`thunk()`, kept between runs where `name` names it (see ProgramCache.remember)."""
        return self.programs.remember(name, fn, args, thunk)

    def release(self) -> None:
        """Drop every compiled program and every cached trace."""
        self.programs.release()
        programs.drop_all()

    def relieve(self) -> bool:
        """`release` where the memory budget is spent (`MapBudget.spent`); called after each
        case run. Returns whether it released."""
        spent = self.budget.spent()
        if spent:
            self.release()
        return spent

    # -- running requests --------------------------------------------------------------------------
    def _call(self, program, name: str | None, fn, args: tuple, extra=()):
        """`program(*args)`, kept between runs where `name` names the program (of `fn`: a
        function or a module factory; `extra`: see ProgramCache.call)."""
        return self.programs.call(program, name, fn, args, self.device, extra)

    def run(self, request: Request):
        """`request`'s program on its arguments, finished (to numpy)."""
        r = request
        return r.finish(self._call(programs.program(r.body, r.many), r.name, r.fn, r.args, r.extra))

    def run_on_host(self, request: Request):
        """`request` run on the CPU backend whatever the run's device: for the rounding model,
        float64 work that needs no accelerator, whose programs compile far faster for the CPU
        (docs/gpu.md measures a whole cold run both ways). On a GPU run it skips the program cache,
        which keys programs by the run's device; JAX's compilation cache still keeps them."""
        if self.device.platform == "cpu":
            return self.run(request)
        args = jax.device_put(request.args, jax.devices("cpu")[0])
        return request.finish(programs.program(request.body, request.many)(*args))

    def run_together(self, requests: list[Request]) -> list:
        """Every request's finished result, from one compiled program: a case run's programs
        take one executable, one program-cache lookup and one call instead of four to ten.
        Raises what any of them raises."""
        if not requests:
            return []
        program = programs.fused_program(tuple(r.body for r in requests), any(r.many for r in requests))
        names = [r.name for r in requests]
        extras = [r.extra for r in requests]
        name = None if None in names else "fused:\n" + "\n".join(names)
        extra = None if None in extras else tuple(sorted({f for e in extras for f in e}))
        fns = tuple(r.fn for r in requests)
        outs = self._call(program, name, fns, (tuple(r.args for r in requests),), extra)
        return [r.finish(o) for r, o in zip(requests, outs)]

    def forward(self, fn, args: list, name: str | None = None) -> tuple:
        return self.run(requests.forward(self, fn, args, name))

    def vjp(self, fn, args: list, diff: list[bool], cts: list, name: str | None = None):
        return self.run(requests.vjp(self, fn, args, diff, cts, name))

    def hvp(self, fn, args: list, diff: list[bool], cts: list, vs: list, name: str | None = None):
        return self.run(requests.hvp(self, fn, args, diff, cts, vs, name))

    def module_grads(self, module, inputs: list, in_diff: list[bool], cts: list, keywords=None, key=None, name=None,
                     via=None):
        return self.run(requests.module(self, module, inputs, in_diff, cts, keywords, key, name, via))
