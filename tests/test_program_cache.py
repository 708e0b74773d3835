"""Programs kept between runs: reused while their sources hold, never after an edit."""

from __future__ import annotations

import functools
import importlib
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crosscheck import registry, session
from crosscheck.adapters import jax_adapter, jax_programs
from crosscheck.adapters.program_cache import ProgramCache
from crosscheck.adapters.sources import identity

LAYER = '''
import jax
import {helper}


@jax.custom_vjp
def square(x):
    return x * x


def _fwd(x):
    return x * x, x


def _bwd(x, g):
    return ({helper}.factor() * g * x,)


square.defvjp(_fwd, _bwd)
'''


def _write_layer(root, name: str, factor: float) -> None:
    """A custom_vjp whose backward takes its factor from a second file: that file emits no
    op, so only the files the trace ran can tell that the program depends on it."""
    (root / f"{name}.py").write_text(textwrap.dedent(LAYER.format(helper=f"{name}_helper")))
    (root / f"{name}_helper.py").write_text(f"def factor():\n    return {factor!r}\n")


def _load(name: str):
    for mod in (name, f"{name}_helper"):
        sys.modules.pop(mod, None)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def _grad(cache: ProgramCache, fn, x):
    program = jax_programs.program(jax_programs.vjp_body(fn, (0,)))
    device = jax.devices("cpu")[0]
    _, (g,) = cache.call(program, "square [] custom vjp", fn, ((x,), {}, (jnp.ones_like(x),)), device)
    return np.asarray(g)


@pytest.fixture
def layer_dir(tmp_path, monkeypatch):
    root = tmp_path / "src"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_an_edited_backward_is_compiled_again_and_an_unchanged_one_is_loaded(layer_dir, tmp_path):
    name = "cc_cached_layer"
    folder = str(tmp_path / "programs")
    x = jnp.arange(1.0, 4.0).reshape(3, 1)

    _write_layer(layer_dir, name, 2.0)
    first = ProgramCache(folder)
    assert np.array_equal(_grad(first, _load(name).square, x), 2 * np.asarray(x))
    assert (first.hits, first.misses) == (0, 1)

    again = ProgramCache(folder)  # a new process: nothing in memory
    assert np.array_equal(_grad(again, _load(name).square, x), 2 * np.asarray(x))
    assert (again.hits, again.misses, again.stale) == (1, 0, 0)

    # Only the helper changes: the layer file is the same, and the helper emits no op.
    (layer_dir / f"{name}_helper.py").write_text("def factor():\n    return 3.0\n")
    edited = ProgramCache(folder)
    assert np.array_equal(_grad(edited, _load(name).square, x), 3 * np.asarray(x))
    assert (edited.hits, edited.misses, edited.stale) == (0, 1, 1)


def test_the_program_that_ran_next_last_time_is_loaded_ahead(layer_dir, tmp_path):
    name = "cc_ahead_layer"
    folder = str(tmp_path / "programs")
    a, b = jnp.arange(1.0, 4.0), jnp.arange(1.0, 5.0)  # two shapes: two programs, a then b
    _write_layer(layer_dir, name, 2.0)
    first = ProgramCache(folder)
    for x in (a, b):
        _grad(first, _load(name).square, x)

    again = ProgramCache(folder)
    square = _load(name).square
    assert np.array_equal(_grad(again, square, a), 2 * np.asarray(a))
    (ahead,) = again.ahead.pending  # b's program, loading on the loader's thread
    assert np.array_equal(_grad(again, square, b), 2 * np.asarray(b))
    assert not again.ahead.pending and ahead in again.memory and (again.hits, again.misses) == (2, 0)

    # Another order (a shard's) keeps links of its own, and follows none of these.
    other = ProgramCache(folder)
    other.order = "1of2"
    _grad(other, square, a)
    assert not other.ahead.pending
    _grad(other, square, b)
    assert len(os.listdir(os.path.join(folder, "next-1of2"))) == 1  # its own a -> b

    # After an edit, the program loaded ahead no longer holds, and is compiled again.
    (layer_dir / f"{name}_helper.py").write_text("def factor():\n    return 3.0\n")
    edited = ProgramCache(folder)
    square = _load(name).square
    for x in (a, b):
        assert np.array_equal(_grad(edited, square, x), 3 * np.asarray(x))
    assert (edited.hits, edited.misses, edited.stale) == (0, 2, 2)


def test_a_trace_kept_by_jax_from_earlier_still_counts_its_files(layer_dir, tmp_path):
    """JAX reuses traces it made before (here the whole program, traced outside the cache);
    the first miss clears them, so the manifest still names the layer and its helper."""
    name = "cc_cached_layer_kept"
    _write_layer(layer_dir, name, 2.0)
    fn = _load(name).square
    x = jnp.arange(1.0, 4.0).reshape(3, 1)
    jax_programs.program(jax_programs.vjp_body(fn, (0,))).lower((x,), {}, (jnp.ones_like(x),))
    cache = ProgramCache(str(tmp_path / "programs"))
    _grad(cache, fn, x)
    (entry,) = os.listdir(cache.folder)
    with open(os.path.join(cache.folder, entry), "rb") as f:
        manifest = pickle.load(f)[0]
    files = {os.path.basename(k) for k in manifest}
    assert {f"{name}.py", f"{name}_helper.py"} <= files


def test_a_damaged_entry_is_compiled_again(layer_dir, tmp_path):
    name = "cc_cached_layer_damaged"
    _write_layer(layer_dir, name, 2.0)
    fn = _load(name).square
    x = jnp.ones((2, 1))
    cache = ProgramCache(str(tmp_path / "programs"))
    _grad(cache, fn, x)
    (entry,) = os.listdir(cache.folder)
    with open(os.path.join(cache.folder, entry), "wb") as f:
        f.write(b"not a program")
    again = ProgramCache(cache.folder)
    assert np.array_equal(_grad(again, fn, x), 2 * np.asarray(x))
    assert (again.hits, again.misses, again.unreadable) == (0, 1, 1)
    replaced = ProgramCache(cache.folder)
    assert np.array_equal(_grad(replaced, fn, x), 2 * np.asarray(x))
    assert (replaced.hits, replaced.misses, replaced.unreadable) == (1, 0, 0)


def _scaled(x, scale):
    return x * scale


def test_identity_tells_functions_apart_by_code_and_held_values():
    assert identity(_scaled) == identity(_scaled)
    assert identity(functools.partial(_scaled, scale=2)) != identity(functools.partial(_scaled, scale=3))

    def make(k):
        return lambda x: x * k

    assert identity(make(1)) != identity(make(2))
    assert identity(make(np.ones(2))) is None  # an array's value is not told: never kept

    @jax.custom_vjp
    def f(x):
        return x

    g = jax.custom_vjp(f.fun)
    f.defvjp(lambda x: (x, None), lambda _, ct: (ct,))
    g.defvjp(lambda x: (x, None), lambda _, ct: (2 * ct,))
    assert identity(f) is not None and identity(f) != identity(g)


def test_only_registered_cases_use_the_program_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSCHECK_JAX_CACHE", str(tmp_path))
    seen = []
    real = jax_adapter.JaxAdapter.use_programs

    def use(self, on, order=""):
        real(self, on, order)
        seen.append(self.programs)

    monkeypatch.setattr(jax_adapter.JaxAdapter, "use_programs", use)
    case = registry.get("sigmoid")
    first = session.run(["sigmoid"], ["float64"], trials=2, program_cache=True)
    assert isinstance(seen[-1], ProgramCache) and seen[-1].misses > 0
    second = session.run(["sigmoid"], ["float64"], trials=2, program_cache=True)
    assert seen[-1].misses == 0 and seen[-1].hits > 0
    # The same checks, the same errors, from the loaded programs.
    rows = lambda report: [(r.check, r.tensor, r.compared, r.max_abs_err) for r in report.results]  # noqa: E731
    assert rows(first) == rows(second)
    session.run(cases=[case], dtypes=["float64"], trials=2, program_cache=True)
    assert seen[-1] is jax_adapter.OFF


def test_a_kept_value_is_computed_again_when_its_sources_change(layer_dir, tmp_path):
    """`remember` keeps what only a trace decides (the contract's verdict, a module's build)."""
    name = "cc_cached_layer_value"
    _write_layer(layer_dir, name, 2.0)
    folder = str(tmp_path / "programs")
    x = (jnp.ones(()),)

    def verdict(cache):
        fn = _load(name).square
        return cache.remember("square [] custom contract", fn, x, lambda: str(jax.make_jaxpr(jax.grad(fn))(*x)))

    first = ProgramCache(folder)
    assert "2.0" in verdict(first) and first.misses == 1
    again = ProgramCache(folder)
    assert verdict(again) == verdict(first) and (again.hits, again.misses) == (1, 0)
    (layer_dir / f"{name}_helper.py").write_text("def factor():\n    return 3.0\n")
    edited = ProgramCache(folder)
    assert "3.0" in verdict(edited) and (edited.stale, edited.misses) == (1, 1)


def test_a_value_that_does_not_pickle_is_computed_each_run_and_marked(tmp_path):
    folder = str(tmp_path / "programs")
    x = (jnp.ones(()),)
    first = ProgramCache(folder)
    made = first.remember("unpicklable", _scaled, x, lambda: [lambda: 1])
    assert made[0]() == 1 and first.misses == 1
    again = ProgramCache(folder)
    assert again.remember("unpicklable", _scaled, x, lambda: [lambda: 2])[0]() == 2
    assert (again.hits, again.misses, again.unkept) == (0, 0, 1)


def test_a_value_holding_importable_jax_functions_is_kept(tmp_path):
    # jnp.tanh (jitted) and jax.nn.relu (custom_jvp) refuse plain pickling; a module that
    # holds one as its activation was rebuilt every run.
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(jnp.tanh)
    folder = str(tmp_path / "programs")
    x = (jnp.ones(()),)
    first = ProgramCache(folder)
    first.remember("activations", _scaled, x, lambda: {"act": jnp.tanh, "gate": jax.nn.relu})
    again = ProgramCache(folder)
    kept = again.remember("activations", _scaled, x, lambda: pytest.fail("computed again"))
    assert kept == {"act": jnp.tanh, "gate": jax.nn.relu} and (again.hits, again.unkept) == (1, 0)


def test_another_checkout_of_the_same_layer_is_another_program(tmp_path, monkeypatch):
    """Two folders hold a module of the same name, with different backwards; one cache folder.
    The first checkout's files stay unchanged, so only the key can tell them apart."""
    name = "cc_cached_layer_checkout"
    folder = str(tmp_path / "programs")
    x = jnp.arange(1.0, 4.0).reshape(3, 1)
    grads = []
    for factor in (2.0, 5.0):
        root = tmp_path / f"checkout{factor}"
        root.mkdir()
        _write_layer(root, name, factor)
        with monkeypatch.context() as m:
            m.syspath_prepend(str(root))
            cache = ProgramCache(folder)
            grads.append(_grad(cache, _load(name).square, x))
            assert (cache.hits, cache.misses) == (0, 1)
    assert np.array_equal(grads[1], 5 * np.asarray(x))


# One small case in one dtype, two shape buckets (two programs, so one link): every kind of entry (programs, kept
# values, the links of the order programs run in, JAX's own compilation cache) at least once.
RUN = ["--layer", "sigmoid", "--dtype", "float32", "--trials", "2", "--shapes", "2"]


def _cli(folder) -> subprocess.CompletedProcess:
    """A whole CLI run in a process of its own, as a user runs it: JAX's cache folder is
    chosen when the adapter is imported, so only a new process can be pointed at `folder`."""
    env = {**os.environ, "CROSSCHECK_JAX_CACHE": str(folder)}
    return subprocess.run([sys.executable, "-m", "crosscheck", *RUN], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """`(folder, copy, stderr)`: the cache folder that a run filled, a copy of it as it was
    then, and what that run wrote on stderr. A test damages the folder itself: JAX's keys
    depend on where its cache lies."""
    root = tmp_path_factory.mktemp("filled")
    first = _cli(root / "jax")
    assert first.returncode == 0, first.stdout + first.stderr
    assert str(root) not in first.stderr  # a sound cache is not reported
    shutil.copytree(root / "jax", root / "copy")
    return root / "jax", root / "copy", first.stderr


def _garbage(data: bytes, rng) -> bytes:
    return rng.bytes(max(len(data), 16))


def _truncated(data: bytes, rng) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize("damage", [_garbage, _truncated], ids=["garbage", "truncated"])
def test_unreadable_entries_are_compiled_again_replaced_and_told_once(filled, damage):
    """Every file of the cache folder spoiled (programs, kept values, links, JAX's own
    entries): the next run passes every check, says so in one line, and replaces them all."""
    folder, copy, before = filled
    shutil.rmtree(folder)
    shutil.copytree(copy, folder)
    rng = np.random.default_rng(0)
    damaged = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        damaged[path] = damage(path.read_bytes(), rng)
        path.write_bytes(damaged[path])
    assert {p.parent.name for p in damaged} >= {"jax", "programs", "next"}

    again = _cli(folder)
    assert again.returncode == 0, again.stdout + again.stderr
    # What this machine writes on every run (a framework's notice) is left out.
    told = [line for line in again.stderr.splitlines() if line.strip() and line not in before.splitlines()]
    assert len(told) == 1 and str(folder) in told[0], again.stderr
    kept = [p for p, data in damaged.items() if p.exists() and p.read_bytes() == data]
    assert not kept, f"left unreadable: {kept}"


@pytest.mark.parametrize("case", [c for c in registry.all_cases() if c.jax_module is not None], ids=lambda c: c.name)
def test_every_case_module_build_is_kept_between_runs(case, tmp_path):
    """A case's nnx module (its abstract build) pickles, by reference to the library's classes:
    a class defined inside a factory would be rebuilt every run (`UNKEPT`). A module whose
    call differs from torch's says so in `Case.jax_call`, not in a class of its own."""
    folder = str(tmp_path / "programs")
    build = lambda: jax_programs.abstract_module(case.jax_module, jnp.dtype("float32"))  # noqa: E731
    ProgramCache(folder).build((case.jax_module, "float32"), build, keep=True)
    again = ProgramCache(folder)
    again.build((case.jax_module, "float32"), lambda: pytest.fail("built again"), keep=True)
    assert (again.hits, again.unkept) == (1, 0)
