"""Checks run from Python leave the process as they found it: JAX's configuration, its
compilation cache, `XLA_FLAGS` and torch's global flags, after `crosscheck.run`,
`crosscheck.check`, `check_port` and a pytest plugin item (issue 14, "No side effects")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_layer" / "src"

# A user's process: settings of their own (TF32 allowed, x64 off, a matmul precision), then
# one call of each kind, the process's state recorded before and after each.
SCRIPT = r"""
import json, os, sys
import jax, jax.numpy as jnp, torch
import pytest

torch.backends.cuda.matmul.allow_tf32 = True
jax.config.update("jax_default_matmul_precision", "bfloat16")
jnp.ones(3).block_until_ready()  # the user's JAX work before any check
CACHE = os.environ["CROSSCHECK_JAX_CACHE"]
JAX = ("jax_enable_x64", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
       "jax_persistent_cache_min_entry_size_bytes", "jax_enable_compilation_cache", "jax_default_matmul_precision")
programs = iter(range(1, 100))


def entries():
    return sum(len(files) for _, _, files in os.walk(CACHE))


def state():
    from jax._src import compilation_cache as cc

    # A program of the user's compiled after the call: it must not land in crosscheck's cache.
    n, was = next(programs), entries()
    jax.jit(lambda x: x * n + 1)(jnp.ones(n)).block_until_ready()
    return {**{name: getattr(jax.config, name) for name in JAX},
            "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            "jnp.asarray(1.0).dtype": str(jnp.asarray(1.0).dtype),
            "a later program went into crosscheck's cache": entries() > was,
            "get_file_cache": f"{cc.get_file_cache.__module__}.{cc.get_file_cache.__qualname__}",
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "default_dtype": str(torch.get_default_dtype()),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "num_threads": torch.get_num_threads(),
            "grad_enabled": torch.is_grad_enabled()}


import crosscheck
from crosscheck import registry
from softsign_layers import crosscheck_cases
from softsign_layers.jax_softsign import softsign as jax_softsign
from softsign_layers.torch_softsign import softsign as torch_softsign

seen = {"before": state()}
report = crosscheck.run(cases=[registry.get("softsign")], dtypes=["float64"], trials=2)
assert report.passed and report.results
seen["crosscheck.run"] = state()
report = crosscheck.check(torch_softsign, jax_softsign, inputs=[(3, 1, 4)], dtypes=["float64"], trials=2)
assert report.passed and report.results
seen["crosscheck.check"] = state()
from flax import nnx
from crosscheck.convert import torch_to_nnx
from crosscheck.models import EXAMPLES
from crosscheck.port import check_port

ex = EXAMPLES["mlp"]
torch_model, nnx_model = ex.torch_model(), ex.nnx_model(nnx.Rngs(0))
torch_to_nnx(torch_model, nnx_model)
report = check_port(torch_model, nnx_model, ex.inputs, dtypes=["float64"], trials=1, name="mlp")
assert report.passed and report.results
seen["check_port"] = state()
with open("test_item.py", "w") as f:
    f.write("import softsign_layers.crosscheck_cases\n\ndef test_crosscheck(crosscheck_case):\n    crosscheck_case.check()\n")
# `no:crosscheck`: a checkout's metadata on the path would register the plugin a second time.
code = pytest.main(["-q", "-p", "no:crosscheck", "-p", "crosscheck.pytest_plugin", "-p", "no:cacheprovider",
                    "--crosscheck-trials", "2", "--crosscheck-shapes", "1", "-k", "float64", "test_item.py"])
assert code == 0, code
seen["a pytest plugin item"] = state()
print(json.dumps(seen))
"""


def test_checks_from_python_leave_jax_torch_and_the_environment_as_they_were(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "CROSSCHECK_JAX_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    before = seen.pop("before")
    assert before["jnp.asarray(1.0).dtype"] == "float32" and before["cuda.matmul.allow_tf32"] is True
    for call, after in seen.items():
        changed = {k: (before[k], after[k]) for k in before if after[k] != before[k]}
        assert not changed, f"{call} changed (before, after): {changed}"
    assert cache.is_dir() and any(cache.iterdir()), "the runs did not use crosscheck's compilation cache"
