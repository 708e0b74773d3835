"""Compiled JAX programs kept on disk between CLI runs, found before anything is traced.

JAX's persistent compilation cache (see jax_adapter) skips XLA's compilation, but it is keyed
by the lowered program, so every run still traces and lowers every program first: in a warm
run of all cases in four dtypes that was about 70% of the time. This cache is keyed before
tracing, by the program's name (case, shape bucket, function, kind), its function's
`identity`, the structure, shapes, dtypes and placement of its arguments, the versions,
configuration and devices of JAX, and `sys.path` (another checkout is another program:
`program_files`). An entry holds the executable and the manifest of every source file its trace
ran (`sources.Sources`, watched from the case run's first miss on: `sources.CaseWatch`); it is
used only while that manifest holds, so an edited backward is always traced and compiled again,
and an edit to one layer leaves the other layers' programs in place. The program that ran next
last time loads ahead, on a thread (`program_ahead`).

What no manifest can see is a function replaced while the process runs (a test's monkeypatch):
the caller turns this cache on only for cases exactly as registered (the CLI).
"""

from __future__ import annotations

import contextlib
import os
import pickle

import jax
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache import compilation_cache

from .program_ahead import Ahead
from .program_files import UNKEPT, entry, environment, signature, write
from .sources import CaseWatch, Sources, identity
from .unreadable import tell


@contextlib.contextmanager
def _uncached():
    """Compile anew, not from JAX's compilation cache: an executable loaded from that cache
    serialises without its code, and fails when run ("Function ... not found"). JAX decides
    once whether the cache is used, so the decision is reset on the way in and out."""
    was = jax.config.jax_enable_compilation_cache
    compilation_cache.reset_cache()
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", was)
        compilation_cache.reset_cache()


class ProgramCache:
    """`call(...)`: a program's executable from memory, else from `folder` while its manifest
    holds, else traced, compiled and stored. Counts `hits`, `misses`, `unkept` (values known not
    to pickle, computed again), `stale` (entries whose sources changed) and `untold` (functions
    without an `identity`, never kept) and `unreadable` (entries that could not be read: each a
    miss, replaced, and told once per run: see `unreadable`)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.sources = Sources()
        self.environment = environment()
        self.memory: dict = {}
        self.ahead = Ahead(folder, self._load, self._unreadable)
        # Which order of programs the links ahead follow (see program_ahead), where it is not
        # the whole registry's.
        self.order = ""
        self.built: dict = {}  # module factory -> files its construction ran
        self.hits = self.misses = self.stale = self.untold = self.unkept = self.unreadable = 0
        self.last_manifest: dict | None = None  # of the value `remember` returned last
        self.case = CaseWatch()

    def new_case(self) -> None:
        """A case run starts: its traces are watched from its first miss on."""
        self.case.new_case()

    def call(self, jitted, name: str, fn, args: tuple, device, extra=()):
        """`jitted(*args)`: the program `name` of `fn` (a function or module factory), with
        `args` on `device` (or sharded over its platform); `extra` files join its manifest.
        A program without a `name` is not kept."""
        if name is None:
            return jitted(*args)
        who = identity(fn)
        if who is None:  # never kept, but a trace JAX keeps from it must still be seen
            self.untold += 1
            with self.case.watch():
                return jitted(*args)
        key = f"{name}\n{who}\n{device.platform} {device.device_kind}\n{signature(args)}\n{self.environment}"
        path = entry(self.folder, key)
        self.ahead.follow(path, self.order, device.client, self.memory)
        executable = self.memory.get(path)
        if executable is not None:
            return executable(*args)
        pending = self.ahead.take(path)
        executable = pending.result() if pending is not None else self._load(path, device.client)
        if executable is not None:
            try:
                out = executable(*args)
            except jax.errors.JaxRuntimeError:  # stored without its code: compiled again below
                self.hits -= 1
                executable = None
        if executable is None:
            executable = self._compile(jitted, args, path, extra)
            out = executable(*args)
        self.memory[path] = executable
        return out

    def remember(self, name: str, fn, args: tuple, thunk):
        """`thunk()`, a value that only tracing `fn` on `args` decides (the raw custom_vjp
        contract's verdict), kept like a program: same key, same manifest; not kept without
        a `name`."""
        if name is None:
            return thunk()
        who = identity(fn)
        if who is None:
            self.untold += 1
            with self.case.watch():
                return thunk()
        path = entry(self.folder, f"{name}\n{who}\n{signature(args)}\n{self.environment}")
        try:
            with open(path, "rb") as f:
                manifest, value = pickle.load(f)
            unkept = isinstance(value, str) and value == UNKEPT
            if self.sources.holds(manifest) and not unkept:
                self.hits += 1
                self.last_manifest = manifest
                return value
            if self.sources.holds(manifest):
                return self._unkept(thunk)  # known not to pickle
            self.stale += 1
        except FileNotFoundError:
            pass
        except Exception:  # unreadable: computed again, and replaced
            self._unreadable(path)
        self.misses += 1
        self.case.start()
        with self.case.watch():
            value = thunk()
        self.last_manifest = None if self.case.blind else self.sources.manifest(self.case.files)
        if self.last_manifest is not None and not write(self.folder, path, (self.last_manifest, value)):
            write(self.folder, path, (self.last_manifest, UNKEPT))
        return value

    def _unkept(self, thunk):
        """A value known not to pickle (a module holding `jnp.tanh`), computed again. Its own
        files are watched without clearing JAX's caches first: nothing of it is kept, and the
        files only join the manifests of its module's programs, whose own traces clear them."""
        self.unkept += 1
        value, seen = self.case.alone(thunk)
        self.last_manifest = None if seen is None else self.sources.manifest(seen)
        return value

    def _unreadable(self, path: str) -> None:
        """`path` could not be read: removed (where nothing replaces it, later runs find a plain
        miss), counted, and told once per run."""
        self.unreadable += 1
        tell(self.folder)
        with contextlib.suppress(OSError):
            os.remove(path)

    def _load(self, path: str, backend):
        if not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as f:
                manifest, payload, in_tree, out_tree = pickle.load(f)
            if not self.sources.holds(manifest):
                self.stale += 1
                return None
            executable = serialize_executable.deserialize_and_load(payload, in_tree, out_tree, backend=backend)
        except Exception:  # unreadable: compiled again, and replaced
            self._unreadable(path)
            return None
        self.hits += 1
        return executable

    def _compile(self, jitted, args, path: str, extra):
        self.misses += 1
        self.case.start()
        with self.case.watch():
            lowered = jitted.lower(*args)
        with _uncached():
            compiled = lowered.compile()
        if not self.case.blind and extra is not None:
            manifest = self.sources.manifest(self.case.files | set(extra))
            write(self.folder, path, (manifest, *serialize_executable.serialize(compiled)))
        return compiled

    def build(self, key, thunk, keep: bool = False):
        """`thunk()`, which builds a module (`key`: its factory and dtype). The files that the
        first build runs join the manifest of that module's programs (`files(key)`). With
        `keep`, the result (a GraphDef and abstract state) is kept between runs as well."""
        if keep:
            out = self.remember(f"module build {key[1]}", key[0], (), thunk)
            seen = self.last_manifest
        else:
            out, seen = self.case.alone(thunk)
        if key not in self.built or seen is None:
            self.built[key] = seen
        return out

    def files(self, key):
        """The files that building the module `key` ran; None where that was not seen."""
        return self.built.get(key)

    def release(self) -> None:
        self.ahead.cancel()
        self.memory.clear()
