"""Compiled JAX programs kept on disk between CLI runs, found before anything is traced.

JAX's persistent compilation cache (see jax_adapter) skips XLA's compilation, but it is keyed
by the lowered program, so every run still traces and lowers every program first: in a warm
run of all cases in four dtypes that was about 70% of the time. This cache is keyed before
tracing, by the program's name (case, shape bucket, function, kind), its function's
`identity`, the structure, shapes, dtypes and placement of its arguments, the versions,
configuration and devices of JAX, and `sys.path` (another checkout is another program). An entry holds the executable and the manifest of every
source file its trace ran (`sources.Sources`); it is used only while that manifest holds, so
an edited backward is always traced and compiled again, and an edit to one layer leaves the
other layers' programs in place.

A trace may reuse one that JAX kept from earlier (a custom_vjp's fwd, say) and so not run its
files again. So the first miss of a case run clears JAX's caches, and from then on every trace
of the case run is watched (`watch`); each entry's manifest holds every file watched since the
clear. What no manifest can see is a function replaced while the process runs (a test's
monkeypatch): the caller turns this cache on only for cases exactly as registered (the CLI).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import importlib
import os
import pickle
import sys
import types

import jax
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache import compilation_cache

from .sources import Sources, identity, watching
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


# Kept in place of a value that does not pickle, so that later runs know not to try.
UNKEPT = "<not kept: does not pickle>"


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


def _environment() -> str:
    import jaxlib

    config = sorted((k, repr(v)) for k, v in getattr(jax.config, "values", {}).items() if "cache" not in k)
    devices = [(d.platform, d.device_kind, d.id) for d in jax.devices()]
    # Where imports are looked for: another checkout of the same layers, with files of its
    # own, is another program even where the files that this one ran are unchanged.
    path = [os.path.realpath(p or os.curdir) for p in sys.path]
    return repr((sys.version, jax.__version__, jaxlib.__version__, os.environ.get("XLA_FLAGS", ""), config, devices, path))


def _signature(args) -> str:
    leaves, tree = jax.tree_util.tree_flatten(args)
    return repr((str(tree), [(tuple(x.shape), str(x.dtype), str(getattr(x, "sharding", ""))) for x in leaves]))


class ProgramCache:
    """`call(...)`: a program's executable from memory, else from `folder` while its manifest
    holds, else traced, compiled and stored. Counts `hits`, `misses`, `unkept` (values known not
    to pickle, computed again), `stale` (entries whose sources changed) and `untold` (functions
    without an `identity`, never kept) and `unreadable` (entries that could not be read: each a
    miss, replaced, and told once per run: see `unreadable`)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.sources = Sources()
        self.environment = _environment()
        self.memory: dict = {}
        # Loading an executable releases the GIL, so the one that ran after this one last time
        # is loaded on a thread of its own while this process goes on (`_follow`): one case run's
        # program at a time, loading took a large share of a warm run (docs/bench.md).
        self.loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="program-loader")
        self.pending: dict = {}  # path -> Future of `_load(path)`
        self.previous: str | None = None  # the program run last
        # Which order of programs the links in `next/` follow: a shard of `--jobs 2` runs every
        # other case, so a one-process run's links would have it load the wrong programs ahead
        # (and the right ones on the main thread). Each order keeps links of its own.
        self.order = ""
        self.built: dict = {}  # module factory -> files its construction ran
        self.hits = self.misses = self.stale = self.untold = self.unkept = self.unreadable = 0
        self.last_manifest: dict | None = None  # of the value `remember` returned last
        self.new_case()

    def new_case(self) -> None:
        """A case run starts: its traces are watched from its first miss on."""
        self.watched: set[str] | None = None  # files run since JAX's caches were cleared
        self.blind = False  # a trace since then could not be watched: store nothing

    @contextlib.contextmanager
    def watch(self):
        """Records the files run inside, once this case run is watched."""
        if self.watched is None:
            yield
            return
        with watching() as seen:
            yield
        if seen is None:
            self.blind = True
        else:
            self.watched |= seen

    def call(self, jitted, name: str, fn, args: tuple, device, extra=()):
        """`jitted(*args)`: the program `name` of `fn` (a function or module factory), with
        `args` on `device` (or sharded over its platform); `extra` files join its manifest."""
        who = identity(fn)
        if who is None:  # never kept, but a trace JAX keeps from it must still be seen
            self.untold += 1
            with self.watch():
                return jitted(*args)
        text = f"{name}\n{who}\n{device.platform} {device.device_kind}\n{_signature(args)}\n{self.environment}"
        path = os.path.join(self.folder, hashlib.sha256(text.encode()).hexdigest())
        self._follow(path, device.client)
        executable = self.memory.get(path)
        if executable is not None:
            return executable(*args)
        pending = self.pending.pop(path, None)
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

    def _follow(self, path: str, backend) -> None:
        """Note that `path` ran after the previous program (in `next/` of the folder, or
        `next-<order>/`), and start loading the program that ran after `path` last time in that
        order, unless it is loaded already."""
        folder = os.path.join(self.folder, f"next-{self.order}" if self.order else "next")
        if self.previous is not None and self.previous != path:
            link = os.path.join(folder, os.path.basename(self.previous))
            if self._link(link) != os.path.basename(path):
                try:
                    os.makedirs(folder, exist_ok=True)
                    tmp = f"{link}.{os.getpid()}.tmp"
                    with open(tmp, "w") as f:
                        f.write(os.path.basename(path))
                    os.replace(tmp, link)
                except OSError:  # a hint only: without it, the next program loads when called
                    pass
        self.previous = path
        name = self._link(os.path.join(folder, os.path.basename(path)))
        if name is None:
            return
        following = os.path.join(self.folder, name)
        if following != path and following not in self.memory and following not in self.pending:
            self.pending[following] = self.loader.submit(self._load, following, backend)

    def _link(self, link: str) -> str | None:
        """The entry's name that `link` holds; None where there is none, or it cannot be read
        (rewritten when the program it names next runs after this one)."""
        try:
            with open(link, "rb") as f:
                name = f.read().decode("ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            name = ""
        # An entry's name is a sha256 in hex: anything else would read outside the folder.
        if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
            return name
        self._unreadable(link)
        return None

    def _unreadable(self, path: str) -> None:
        """`path` could not be read: removed (where nothing replaces it, later runs find a plain
        miss), counted, and told once per run."""
        self.unreadable += 1
        tell(self.folder)
        with contextlib.suppress(OSError):
            os.remove(path)

    def remember(self, name: str, fn, args: tuple, thunk):
        """`thunk()`, a value that only tracing `fn` on `args` decides (the raw custom_vjp
        contract's verdict), kept like a program: same key, same manifest."""
        who = identity(fn)
        if who is None:
            self.untold += 1
            with self.watch():
                return thunk()
        text = f"{name}\n{who}\n{_signature(args)}\n{self.environment}"
        path = os.path.join(self.folder, hashlib.sha256(text.encode()).hexdigest())
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
        self._watch_from_here()
        with self.watch():
            value = thunk()
        self.last_manifest = None if self.blind else self.sources.manifest(self.watched)
        if self.last_manifest is not None and not self._store(path, (self.last_manifest, value)):
            self._store(path, (self.last_manifest, UNKEPT))
        return value

    def _unkept(self, thunk):
        """A value known not to pickle (a module holding `jnp.tanh`), computed again. Its own
        files are watched without clearing JAX's caches first: nothing of it is kept, and the
        files only join the manifests of its module's programs, whose own traces clear them."""
        self.unkept += 1
        value, seen = self._watched_alone(thunk)
        self.last_manifest = None if seen is None else self.sources.manifest(seen)
        return value

    def _watched_alone(self, thunk):
        """`(thunk(), the files it ran)`, watched on its own; those files also join the case
        run's, when it is watched (a trace JAX keeps from it may serve a later program)."""
        with watching() as seen:
            value = thunk()
        if self.watched is not None:
            if seen is None:
                self.blind = True
            else:
                self.watched |= seen
        return value, seen

    def _watch_from_here(self) -> None:
        """At a case run's first miss: clear JAX's caches, and watch every trace from now on."""
        if self.watched is None:
            jax.clear_caches()
            self.watched = set()

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
        self._watch_from_here()
        with self.watch():
            lowered = jitted.lower(*args)
        with _uncached():
            compiled = lowered.compile()
        if not self.blind and extra is not None:
            manifest = self.sources.manifest(self.watched | set(extra))
            self._store(path, (manifest, *serialize_executable.serialize(compiled)))
        return compiled

    def _store(self, path: str, entry) -> bool:
        """Write `entry` to `path`; False where it does not pickle."""
        os.makedirs(self.folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                _Pickler(f).dump(entry)
        except (pickle.PicklingError, AttributeError, TypeError):  # a class defined in a function
            os.remove(tmp)
            return False
        os.replace(tmp, path)  # whole or absent, even with several processes writing
        return True

    def build(self, key, thunk, keep: bool = False):
        """`thunk()`, which builds a module (`key`: its factory and dtype). The files that the
        first build runs join the manifest of that module's programs (`files(key)`). With
        `keep`, the result (a GraphDef and abstract state) is kept between runs as well."""
        if keep:
            out = self.remember(f"module build {key[1]}", key[0], (), thunk)
            files = self.last_manifest
        else:
            out, files = self._watched_alone(thunk)
        if key not in self.built or files is None:
            self.built[key] = files
        return out

    def files(self, key):
        """The files that building the module `key` ran; None where that was not seen."""
        return self.built.get(key)

    def release(self) -> None:
        for pending in self.pending.values():
            pending.cancel()
        self.pending.clear()
        self.memory.clear()
