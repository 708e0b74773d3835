"""Many trials compile with backend optimisations on; the usual few keep them off."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from crosscheck import adapters
from crosscheck.adapters import jax_programs


def test_programs_over_many_trials_ask_for_optimisations(monkeypatch):
    jax_side = adapters.get("jax")
    asked = []
    real = jax_programs.jit
    monkeypatch.setattr(jax_programs, "jit", lambda f, many: asked.append(many) or real(f, many))
    jax_side.release()  # every program is built again, through `jit`

    def fn(x):
        return x * x

    for trials in (8, jax_programs.MANY_TRIALS):
        x = jax_side.from_numpy(np.ones((trials, 3)), "float", "float64")
        outs, grads, _ = jax_side.vjp(fn, [x], [True], [x])
        np.testing.assert_allclose(grads[0], 2 * np.ones((trials, 3)))
    assert asked == [False, True]



def test_fusion_emitters_are_off_unless_the_user_chose_or_xla_lacks_the_option(monkeypatch):
    jax_programs.compile_options.cache_clear()
    assert jax_programs.compile_options() == (("xla_cpu_use_fusion_emitters", False),)
    asked = []
    monkeypatch.setattr(jax_programs.jax, "jit", lambda f, **kw: asked.append(kw.get("compiler_options")))
    jax_programs.jit(lambda x: x, False)
    jax_programs.jit(lambda x: x, True)
    assert asked == [
        {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0},
        {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 2},
    ]
    monkeypatch.undo()

    jax_programs.compile_options.cache_clear()
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    assert jax_programs.compile_options() == ()
    jax_programs.compile_options.cache_clear()
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(jax_programs, "FUSION_EMITTERS", "xla_cpu_no_such_option")
    assert jax_programs.compile_options() == ()  # the probe's compile refused it
    jax_programs.compile_options.cache_clear()


def test_a_level_the_user_set_is_left_to_xla(monkeypatch):
    asked = []
    monkeypatch.setattr(jax_programs.jax, "jit", lambda f, **kw: asked.append(kw.get("compiler_options")))
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=1")
    jax_programs.jit(lambda x: x, False)
    jax_programs.jit(lambda x: x, True)
    assert all("xla_backend_optimization_level" not in options for options in asked)


def test_importing_the_adapter_leaves_xla_flags_alone():
    """A level set in the environment would reach the user's later programs and every child
    process (pytest-xdist's workers, `--jobs` shards), which would read it as the user's."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = "import os, crosscheck.adapters.jax_adapter; print(repr(os.environ.get('XLA_FLAGS')))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
