"""The JAX side: numpy in, numpy out; all trials of a program in one `jit(vmap(...))` call.

Importing this module changes no global configuration. `configure()`, called when the
adapter is taken for a run (`adapters.get("jax")`), turns on `jax_enable_x64` (float64 checks
need it, and it must be set before any JAX array exists) and the persistent compilation cache.
It leaves `XLA_FLAGS` alone: its compile options travel with each program (`_jit`).
"""

from __future__ import annotations

import os

import jax


def _cache_folder() -> str:
    return os.environ.get("CROSSCHECK_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "crosscheck", "jax"))


def configure() -> None:
    """JAX as a crosscheck run needs it: float64 on, and the persistent compilation cache
    (`_persistent_cache`). Call it before any JAX array exists; calling it again changes nothing."""
    jax.config.update("jax_enable_x64", True)
    _persistent_cache()


def _persistent_cache() -> None:
    """Keep compiled programs on disk, so a second run skips XLA compilation.

    `CROSSCHECK_JAX_CACHE` names the folder (default `~/.cache/crosscheck/jax`); set it empty
    to turn the cache off. A folder already set by the user (`jax_compilation_cache_dir`) wins.
    """
    folder = _cache_folder()
    if not folder or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from .unreadable import guard_jax_cache

    guard_jax_cache(folder)  # an entry it cannot read is a miss, replaced (see unreadable)


import functools  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from . import call, vjp_result  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

DTYPES = {"float64": np.float64, "float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# The programs here are many and tiny: LLVM's optimisation passes cost more than they save, so
# they compile at backend optimisation level 0 (docs/bench.md measures it), and at level 2 over
# many trials, where the code's speed comes to matter. Neither where the user set the level in
# `XLA_FLAGS`. The level travels with each program (`compiler_options`), not through the
# environment: a level set in `os.environ` reaches every later JAX program of the user's
# process and every child process, which would then read it as the user's choice.
MANY_TRIALS = 64
_LEVEL = "xla_backend_optimization_level"


def _jit(f, many: bool):
    """`jax.jit(f)` with `_compile_options()` and the backend optimisation level for `many`
    trials or few."""
    options = dict(_compile_options())
    if _LEVEL not in os.environ.get("XLA_FLAGS", ""):
        options[_LEVEL] = 2 if many else 0
    return jax.jit(f, compiler_options=options)


# XLA:CPU emits its fusions through MLIR ("fusion emitters") unless told not to; the older
# emitters compile faster, with warm runs and every check unchanged (docs/bench.md, "XLA:CPU's
# fusion emitters off"). Not where the user set it in `XLA_FLAGS`.
_FUSION_EMITTERS = "xla_cpu_use_fusion_emitters"


@functools.cache
def _compile_options() -> tuple:
    """`((option, value), ...)` for every program: the fusion emitters off, where this XLA has
    the option (a tiny program is compiled with it once; an XLA without it raises there)."""
    if _FUSION_EMITTERS in os.environ.get("XLA_FLAGS", ""):
        return ()
    options = {_FUSION_EMITTERS: False}
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
    except Exception:  # an XLA that no longer knows the option: compile as it chooses
        return ()
    return tuple(options.items())


def _many(args) -> bool:
    """Whether `args` (trial axis first) hold MANY_TRIALS or more trials."""
    leaves = [x for x in jax.tree_util.tree_leaves(args) if getattr(x, "ndim", 0)]
    return bool(leaves) and leaves[0].shape[0] >= MANY_TRIALS


# One body per (function, differentiable positions), and one jitted program per body and
# optimisation level: repeated runs of a case (other dtypes trace anew inside jit, other trials
# counts too) never rebuild the Python wrapper, and jit's own cache skips tracing when shapes
# and dtypes repeat. A case run's fused program composes the bodies, not the jitted programs:
# only a top-level jit takes `compiler_options`.
@functools.lru_cache(maxsize=None)
def _forward_body(fn):
    return jax.vmap(lambda *a: _as_tuple(fn(*a)))


@functools.lru_cache(maxsize=None)
def _vjp_per_trial(fn, idx: tuple[int, ...]):
    def per_trial(primals, others, cts):
        def f(*p):
            a = {**others, **dict(zip(idx, p))}
            return _as_tuple(fn(*(a[i] for i in range(len(a)))))

        out, vjp_fn = jax.vjp(f, *primals)
        return out, vjp_fn(tuple(cts))

    return per_trial


@functools.lru_cache(maxsize=None)
def _vjp_body(fn, idx: tuple[int, ...]):
    return jax.vmap(_vjp_per_trial(fn, idx))


@functools.lru_cache(maxsize=None)
def _hvp_per_trial(fn, idx: tuple[int, ...]):
    def per_trial(primals, others, cts, vs):
        def loss(p):
            a = {**others, **dict(zip(idx, p))}
            outs = _as_tuple(fn(*(a[i] for i in range(len(a)))))
            return sum(jnp.sum(o * c) for o, c in zip(outs, cts))

        # Forward over reverse: the tangent of `grad(loss)` along `vs` is `H vs`. It takes
        # the custom bwd rule's derivative as grad of grad does, and traces in about half the
        # time.
        return jax.jvp(jax.grad(loss), (primals,), (tuple(vs),))[1]

    return per_trial


@functools.lru_cache(maxsize=None)
def _hvp_both_orders_per_trial(fn, idx: tuple[int, ...]):
    """The same products twice: forward over reverse (as JAX computes them) and reverse over
    reverse (`grad(<grad(loss), vs>)`, as torch's double backward does). For the rounding
    model, which must see both: reverse over reverse rounds each path's contribution before
    summing them (mse's products differed by 240 u between torch's two double backwards, from
    unit-size contributions that cancel), forward over reverse carries one tangent through
    other steps (gelu-tanh's model allowed 0.6 of its error under reverse over reverse alone)."""
    forward = _hvp_per_trial(fn, idx)

    def per_trial(primals, others, cts, vs):
        def loss(p):
            a = {**others, **dict(zip(idx, p))}
            outs = _as_tuple(fn(*(a[i] for i in range(len(a)))))
            return sum(jnp.sum(o * c) for o, c in zip(outs, cts))

        along = lambda p: sum(jnp.sum(g * v) for g, v in zip(jax.grad(loss)(p), vs))  # noqa: E731
        return forward(primals, others, cts, vs), jax.grad(along)(primals)

    return per_trial


@functools.lru_cache(maxsize=None)
def _hvp_body(fn, idx: tuple[int, ...]):
    return jax.vmap(_hvp_per_trial(fn, idx))


@functools.lru_cache(maxsize=None)
def _program(body, many: bool = False):
    """`body` compiled on its own (`_jit`)."""
    return _jit(body, many)


@functools.lru_cache(maxsize=None)
def _trial_sharding(devices: tuple, whole: bool = False):
    """Split along the trial axis over `devices`, or (`whole`) copied onto each."""
    mesh = jax.sharding.Mesh(np.array(devices), ("trials",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec() if whole else jax.sharding.PartitionSpec("trials"))


# Each compiled program holds memory mappings for its code, and the kernel allows a process
# 65530 of them (`vm.max_map_count`); past that, LLVM fails with "Cannot allocate memory" and
# the process aborts. A default run (96 cases, four dtypes, two shape buckets) compiles about
# 6,000 programs: 192 float64/float32 case runs left 28,000 mappings. So once the mappings
# pass MAP_BUDGET, every program is dropped; the persistent cache reloads any still needed.
MAP_BUDGET = 20000
# Counting the mappings costs time in proportion to them (the kernel writes out every one), and
# a case run adds a few hundred: counted every COUNT_EVERY case runs, the count stays far below
# the kernel's limit between counts. Where /proc cannot count, every BLIND_EVERY case runs
# release all the same. (docs/bench.md, "Measurements moved here from code comments".)
COUNT_EVERY = 8
BLIND_EVERY = 64


def _mapped_regions() -> int | None:
    """This process's memory mappings (Linux), or None where /proc does not say."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return None


class JaxAdapter:
    framework_name = "jax"

    def __init__(self):
        self.set_device("cpu")
        self.case_runs = 0
        self.mapped: int | None = 0  # the last count of memory mappings (None: unknown)
        self.programs = None

    def use_programs(self, on: bool, order: str = "") -> None:
        """Keep compiled programs between runs (`program_cache`), in `programs/` of the cache
        folder, or stop. Only for cases exactly as registered: a function replaced while the
        process runs would find its original's program. `order` names the order the programs
        run in, where it is not the whole registry's (a shard's: see ProgramCache.order)."""
        folder = _cache_folder()
        if on and folder and self.programs is None:
            try:
                from .program_cache import ProgramCache
            except ImportError:  # a JAX without `jax.experimental.serialize_executable`
                return
            self.programs = ProgramCache(os.path.join(folder, "programs"))
        if on and self.programs is not None:
            self.programs.order = order
        elif not on:
            self.programs = None

    def new_case(self) -> None:
        """A case run starts (see ProgramCache.new_case)."""
        if self.programs is not None:
            self.programs.new_case()

    def remember(self, name: str | None, fn, args: tuple, thunk):
        """`thunk()`, kept between runs by the program cache when it is on and `name` names
        it (see ProgramCache.remember)."""
        if self.programs is None or name is None:
            return thunk()
        return self.programs.remember(name, fn, args, thunk)

    def _build(self, key, thunk, keep: bool = False):
        """`thunk()`, building the module `key`, through the program cache when it is on (see
        ProgramCache.build)."""
        return thunk() if self.programs is None else self.programs.build(key, thunk, keep)

    def _call(self, program, name: str | None, fn, args: tuple, extra=()):
        """`program(*args)`, through the program cache when it is on and `name` names the
        program (of `fn`: a function or a module factory; `extra`: see ProgramCache.call)."""
        if self.programs is None or name is None:
            return program(*args)
        return self.programs.call(program, name, fn, args, self.device, extra)

    def release(self) -> None:
        """Drop every compiled program and every cached trace."""
        if self.programs is not None:
            self.programs.release()
        for cached in (_forward_body, _vjp_body, _hvp_body, _module_body, _program, _fused_program, _built, _abstract_module):
            cached.cache_clear()
        _GRAPHDEFS.clear()
        jax.clear_caches()

    def relieve(self) -> bool:
        """`release` once the mappings pass MAP_BUDGET, counted every COUNT_EVERY case runs
        (every BLIND_EVERY where the count is unknown); called after each case run. Returns
        whether it released."""
        self.case_runs += 1
        if self.mapped is not None and self.case_runs % COUNT_EVERY != 1:
            return False
        self.mapped = _mapped_regions()
        crowded = self.mapped > MAP_BUDGET if self.mapped is not None else self.case_runs % BLIND_EVERY == 0
        if crowded:
            self.release()
            self.mapped = self.mapped and 0
        return crowded

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

    # -- programs: each method has a `*_request` twin, whose requests `run_together` fuses ------
    def run(self, request: "Request"):
        """`request`'s program on its arguments, finished (to numpy)."""
        r = request
        return r.finish(self._call(_program(r.body, r.many), r.name, r.fn, r.args, r.extra))

    def run_on_host(self, request: "Request"):
        """`request` run on the CPU backend whatever the run's device: for the rounding model,
        float64 work that needs no accelerator, whose programs compile far faster for the CPU
        (docs/gpu.md measures a whole cold run both ways). On a GPU run it skips the program cache,
        which keys programs by the run's device; JAX's compilation cache still keeps them."""
        if self.device.platform == "cpu":
            return self.run(request)
        args = jax.device_put(request.args, jax.devices("cpu")[0])
        return request.finish(_program(request.body, request.many)(*args))

    def run_together(self, requests: list["Request"]) -> list:
        """Every request's finished result, from one compiled program: a case run's programs
        take one executable, one program-cache lookup and one call instead of four to ten.
        Raises what any of them raises."""
        if not requests:
            return []
        program = _fused_program(tuple(r.body for r in requests), any(r.many for r in requests))
        names = [r.name for r in requests]
        extras = [r.extra for r in requests]
        name = None if None in names else "fused:\n" + "\n".join(names)
        extra = None if None in extras else tuple(sorted({f for e in extras for f in e}))
        fns = tuple(r.fn for r in requests)
        outs = self._call(program, name, fns, (tuple(r.args for r in requests),), extra)
        return [r.finish(o) for r, o in zip(requests, outs)]

    def forward_request(self, fn, args: list, name: str | None = None) -> "Request":
        """`fn` over the trial axis of every arg; for a custom_vjp this is the undecorated path.
        `name` names the program for the program cache (see `use_programs`)."""
        many = _many(args)
        finish = lambda outs: tuple(self.to_numpy(o) for o in outs)  # noqa: E731
        return Request(_forward_body(fn), name and f"{name} forward", fn, tuple(args), finish, many=many)

    def forward(self, fn, args: list, name: str | None = None) -> tuple:
        return self.run(self.forward_request(fn, args, name))

    def vjp_request(self, fn, args: list, diff: list[bool], cts: list, name: str | None = None) -> "Request":
        """Outputs (from the fwd rule) and VJPs of `fn` over trials; see TorchAdapter.vjp."""
        idx = [i for i, d in enumerate(diff) if d]
        others = {i: a for i, (a, d) in enumerate(zip(args, diff)) if not d}
        many = _many(args)
        finish = lambda raw: vjp_result(self, len(args), idx, *raw)  # noqa: E731
        split = (tuple(args[i] for i in idx), others, tuple(cts))
        return Request(_vjp_body(fn, tuple(idx)), name and f"{name} vjp {idx}", fn, split, finish, many=many)

    def vjp(self, fn, args: list, diff: list[bool], cts: list, name: str | None = None):
        return self.run(self.vjp_request(fn, args, diff, cts, name))

    def hvp_request(self, fn, args: list, diff: list[bool], cts: list, vs: list, name: str | None = None) -> "Request":
        """Hessian-vector products of `L = sum(ct * fn(args))` along `vs`: the JVP of its gradient."""
        idx = [i for i, d in enumerate(diff) if d]
        others = {i: a for i, (a, d) in enumerate(zip(args, diff)) if not d}
        many = _many(args)

        def finish(hv):
            full = [None] * len(args)
            for i, h in zip(idx, hv):
                full[i] = self.to_numpy(h)
            return full

        split = (tuple(args[i] for i in idx), others, tuple(cts), tuple(vs))
        return Request(_hvp_body(fn, tuple(idx)), name and f"{name} hvp {idx}", fn, split, finish, many=many)

    def hvp(self, fn, args: list, diff: list[bool], cts: list, vs: list, name: str | None = None):
        return self.run(self.hvp_request(fn, args, diff, cts, vs, name))

    def rounding_request(self, fn, args: list, diff: list[bool], cts: list, units: tuple[float, float],
                         vs: list | None = None, draws: int = 8, name: str | None = None) -> "Request":
        """How far each output and gradient of `fn`'s VJP (or, given `vs`, each Hessian
        product) may move under rounding: `jax_rounding.spread` per trial, in float64, with
        `units` the unit roundoffs of results and of sums' terms. The result is the VJP's
        `(outs, grads)` (grads None where not differentiable) or the products' list."""
        from .jax_rounding import noise, spread_body

        idx = tuple(i for i, d in enumerate(diff) if d)
        others = {i: a for i, (a, d) in enumerate(zip(args, diff)) if not d}
        primals = tuple(args[i] for i in idx)

        def place(values):
            full = [None] * len(args)
            for i, v in zip(idx, values):
                full[i] = self.to_numpy(v)
            return full

        head = (jnp.asarray(units, jnp.float64), jnp.asarray(noise(draws)))
        if vs is None:
            body, split, what = spread_body(_vjp_per_trial(fn, idx)), (*head, primals, others, tuple(cts)), "vjp"
            finish = lambda raw: (tuple(self.to_numpy(o) for o in raw[0]), place(raw[1]))  # noqa: E731
        else:
            body = spread_body(_hvp_both_orders_per_trial(fn, idx))
            split, what = (*head, primals, others, tuple(cts), tuple(vs)), "hvp"
            finish = lambda raw: place([np.maximum(*map(self.to_numpy, pair)) for pair in zip(*raw)])  # noqa: E731
        return Request(body, name and f"{name} rounding {what} {list(idx)}", fn, split, finish, many=_many(args))

    def build_module(self, factory, dtype: str, values: dict):
        """`factory(dtype)` with `values` (`{nnx path: numpy array}`) loaded in `dtype`.

        The module is built abstractly (`nnx.eval_shape`: no initialiser runs, and each eager
        initialiser op would compile a program of its own) when `values` fill every variable;
        otherwise (an RNG stream, statistics that training updates) it is built concretely,
        inside one compiled call.
        """
        from flax import nnx

        from ..convert._core import _nnx_set

        jdtype = self.jax_dtype(dtype)
        key = (factory, dtype)
        module = nnx.merge(*self._build(key, lambda: _abstract_module(factory, jdtype), keep=True), copy=True)
        for path, value in values.items():
            _nnx_set(module, path, value, jdtype)
        leaves = jax.tree_util.tree_leaves(nnx.state(module))
        if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
            with jax.default_device(self.device):
                module = self._build(key, lambda: _built(factory, jdtype)())
            for path, value in values.items():
                _nnx_set(module, path, value, jdtype)
        return module

    def module_request(self, module, inputs: list, in_diff: list[bool], cts: list, keywords=None, key=None, name=None,
                       via=None):
        """One trial through `module(*inputs)` (or `via(module, *inputs)`: see `Case.jax_call`),
        differentiated with respect to its `nnx.Param`s and the differentiable inputs, as
        `nnx.grad` does for a user; compiled, so that a second run takes the program from the
        persistent cache.

        Finishes as `(outs, input_grads {i: g}, param_grads {path: g}, meta, expected_meta)`;
        `meta` holds each raw gradient's `(shape, dtype)`, `expected_meta` each parameter's.
        `key` names the module's structure (its factory and dtype): a GraphDef may hold
        functions that compare unequal from one build to the next, which would trace anew.
        """
        from flax import nnx

        from ..convert._core import flatten

        idx = tuple(i for i, d in enumerate(in_diff) if d)
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)
        if key is not None:
            graphdef = _GRAPHDEFS.setdefault(key, graphdef)
        keywords = tuple(keywords or [None] * len(inputs))
        body = _module_body(graphdef, idx, keywords, via)
        built = self.programs.files(key) if self.programs is not None else ()
        named = name and f"{name} module {idx} {keywords}"

        def finish(raw):
            outs, model_grads, input_grads = raw
            param_grads = flatten(nnx.to_pure_dict(model_grads))
            grads = {**dict(zip(idx, input_grads)), **param_grads}
            meta = {k: (tuple(g.shape), self.dtype_name(g)) for k, g in grads.items()}
            expected = {k: (tuple(p.shape), self.dtype_name(p)) for k, p in flatten(nnx.to_pure_dict(params)).items()}
            expected.update({i: (tuple(inputs[i].shape), self.dtype_name(inputs[i])) for i in idx})
            return (
                tuple(self.to_numpy(o) for o in outs),
                {i: self.to_numpy(g) for i, g in zip(idx, input_grads)},
                {k: self.to_numpy(g) for k, g in param_grads.items()},
                meta,
                expected,
            )

        fn = key and (key[0] if via is None else (key[0], via))
        return Request(body, named, fn, (params, rest, tuple(inputs), tuple(cts)), finish, built)

    def module_grads(self, module, inputs: list, in_diff: list[bool], cts: list, keywords=None, key=None, name=None,
                     via=None):
        return self.run(self.module_request(module, inputs, in_diff, cts, keywords, key, name, via))


@dataclass
class Request:
    """One program call, not yet run: `body(*args)` compiled, then `finish` on its raw output.
    `name`, `fn` and `extra` are what the program cache needs (see `JaxAdapter._call`);
    `many` whether its arguments hold MANY_TRIALS or more trials."""

    body: object  # the function that `_program` compiles
    name: str | None
    fn: object
    args: tuple
    finish: object
    extra: tuple | None = ()
    many: bool = False


@functools.lru_cache(maxsize=None)
def _fused_program(bodies: tuple, many: bool):
    """One program that runs every one of `bodies`, each on its own arguments."""
    return _jit(lambda groups: tuple(b(*a) for b, a in zip(bodies, groups)), many)


@functools.lru_cache(maxsize=None)
def _module_body(graphdef, idx: tuple[int, ...], keywords: tuple[str | None, ...], via=None):
    """`(params, rest, inputs, cts) -> (outs, param grads, input grads)` for one module
    structure: the user's `nnx.grad` over the module, rebuilt from its state inside `jit`,
    called directly or `via(module, *inputs)`."""
    from flax import nnx

    def run(params, rest, inputs, cts):
        def loss(model, *diff_inputs):
            xs = list(inputs)
            for i, v in zip(idx, diff_inputs):
                xs[i] = v
            outs = _as_tuple(call(model if via is None else functools.partial(via, model), xs, keywords))
            return sum(jnp.sum(o * c) for o, c in zip(outs, cts)), outs

        model = nnx.merge(graphdef, params, rest)
        (model_grads, *input_grads), outs = nnx.grad(loss, argnums=tuple(range(1 + len(idx))), has_aux=True)(
            model, *(inputs[i] for i in idx)
        )
        return outs, model_grads, tuple(input_grads)

    return run


_GRAPHDEFS: dict = {}


@functools.lru_cache(maxsize=None)
def _abstract_module(factory, dtype):
    """`(graphdef, state)` of `factory(dtype)` traced abstractly, once per factory and dtype."""
    from flax import nnx

    return nnx.split(nnx.eval_shape(lambda: factory(dtype)))


@functools.lru_cache(maxsize=None)
def _built(factory, dtype):
    from flax import nnx

    return nnx.jit(lambda: factory(dtype))
