"""What a traced JAX program depends on, told without tracing it again.

A program kept between runs (`program_cache`) may be reused only while everything its trace
ran is unchanged. `watching()` records the Python files a trace runs (`CaseWatch`: every trace
of a case run from its first miss on); `Sources` turns them into a manifest (the text of each
file outside site-packages; for a package installed in site-packages the size and time of its
own file, which an install or upgrade rewrites; nothing for the standard library, which
Python's version names) and tells whether a manifest still holds. `identity` names a function by where its code lives and the values it holds.
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import hashlib
import os
import sys
import sysconfig
import types


def _roots(*kinds: str) -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) + os.sep for k in kinds)


@contextlib.contextmanager
def watching():
    """Yields a set that holds, on exit, the file of every Python function called inside; or
    None where another profiler runs (this one would stop it), and nothing can be told."""
    if sys.getprofile() is not None:
        yield None
        return
    seen: set[str] = set()
    profile = cProfile.Profile()
    try:
        profile.enable(subcalls=False, builtins=False)  # Python functions are all it needs
    except ValueError:  # Python 3.12+: another tool holds the profiling hook
        yield None
        return
    try:
        yield seen
    finally:
        profile.disable()
        profile.create_stats()
        seen.update(code[0] for code in profile.stats)


class CaseWatch:
    """The files that a case run's traces ran, watched from its first miss on (`start`).

    A trace may reuse one that JAX kept from earlier (a custom_vjp's fwd, say) and so not run
    its files again. So the first miss of a case run clears JAX's caches, and from then on every
    trace of the case run is watched (`watch`), and `files` holds every file run since the
    clear. `blind` once a trace since then could not be watched (another profiler ran).
    """

    def __init__(self):
        self.new_case()

    def new_case(self) -> None:
        self.files: set[str] | None = None
        self.blind = False

    def start(self) -> None:
        """At a case run's first miss: clear JAX's caches, and watch every trace from now on."""
        import jax

        if self.files is None:
            jax.clear_caches()
            self.files = set()

    @contextlib.contextmanager
    def watch(self):
        """Records the files run inside, once the case run is watched."""
        if self.files is None:
            yield
            return
        with watching() as seen:
            yield
        self._add(seen)

    def alone(self, thunk):
        """`(thunk(), the files it ran)`, watched on its own; those files also join the case
        run's, when it is watched (a trace JAX keeps from it may serve a later program)."""
        with watching() as seen:
            value = thunk()
        if self.files is not None:
            self._add(seen)
        return value, seen

    def _add(self, seen) -> None:
        if seen is None:
            self.blind = True
        else:
            self.files |= seen


class Sources:
    """Manifests of source files, each file's part read once per process."""

    def __init__(self):
        self.installed = _roots("purelib", "platlib")
        self.stdlib = _roots("stdlib", "platstdlib")
        self.parts: dict[str, str] = {}

    def _entry(self, file: str) -> str | None:
        """The manifest's key for `file`: itself, its installed package, or None (not kept)."""
        if file.startswith("<") or file == "~":  # built-in or generated code
            return None
        if file.startswith("installed:"):  # already an entry, from a manifest
            return file
        path = os.path.realpath(file)
        for root in self.installed:
            if path.startswith(root):
                return "installed:" + os.path.join(root, path[len(root) :].split(os.sep)[0])
        return None if path.startswith(self.stdlib) else path

    def _part(self, entry: str) -> str:
        if entry.startswith("installed:"):
            top = entry[len("installed:") :]
            own = os.path.join(top, "__init__.py") if os.path.isdir(top) else top
            try:
                stat = os.stat(own)
            except OSError:
                return "missing"
            return f"{stat.st_size} {stat.st_mtime_ns}"
        try:
            with open(entry, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return "missing"

    def part(self, entry: str) -> str:
        if entry not in self.parts:
            self.parts[entry] = self._part(entry)
        return self.parts[entry]

    def manifest(self, files) -> dict[str, str]:
        entries = {e for e in map(self._entry, files) if e is not None}
        return {e: self.part(e) for e in sorted(entries)}

    def holds(self, manifest: dict[str, str]) -> bool:
        return all(self.part(e) == v for e, v in manifest.items())


def identity(obj, depth: int = 0) -> str | None:
    """`obj` described by where its code lives (file and line) and the values it holds (a
    closure's cells, a partial's arguments, a custom_vjp's fwd and bwd), the same in every
    process exactly when those are; None where that cannot be told (an array, an object of
    unknown kind)."""
    import jax

    if depth > 8:
        return None
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return repr(obj)
    deeper = functools.partial(identity, depth=depth + 1)
    if isinstance(obj, (tuple, list)):
        parts = [deeper(x) for x in obj]
        return None if None in parts else f"{type(obj).__name__}({', '.join(parts)})"
    if isinstance(obj, dict):
        parts = [(deeper(k), deeper(v)) for k, v in obj.items()]
        return None if any(None in p for p in parts) else "{" + ", ".join(f"{k}: {v}" for k, v in parts) + "}"
    if isinstance(obj, functools.partial):
        return _joined("partial", deeper(obj.func), deeper(obj.args), deeper(obj.keywords))
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.FunctionType):
        cells = [c.cell_contents for c in obj.__closure__ or ()]
        return _joined(
            f"{obj.__module__}.{obj.__qualname__}:{obj.__code__.co_filename}:{obj.__code__.co_firstlineno}",
            deeper(cells), deeper(obj.__defaults__), deeper(obj.__kwdefaults__),
        )
    if isinstance(obj, jax.custom_vjp):
        return _joined("custom_vjp", *map(deeper, (obj.fun, obj.fwd, obj.bwd, obj.nondiff_argnums)))
    if isinstance(obj, jax.custom_jvp):
        return _joined("custom_jvp", *map(deeper, (obj.fun, obj.jvp, obj.nondiff_argnums)))
    return None


def _joined(head: str, *parts: str | None) -> str | None:
    return None if None in parts else f"{head}({', '.join(parts)})"
