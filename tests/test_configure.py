"""Importing the harness changes no global configuration; `configure()` is what does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, os, sys
import jax

NAMES = ("jax_enable_x64", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
         "jax_persistent_cache_min_entry_size_bytes")
state = lambda: {**{n: getattr(jax.config, n) for n in NAMES}, "XLA_FLAGS": os.environ.get("XLA_FLAGS")}
before = state()
import crosscheck, crosscheck.adapters, crosscheck.adapters.jax_adapter, crosscheck.adapters.torch_adapter
import crosscheck.session, crosscheck.runner, crosscheck.frameworks._jax, crosscheck.port, crosscheck.convert
crosscheck.registry.all_cases()  # the case modules, with the layers they import
imported = state()
crosscheck.configure()
json.dump({"before": before, "imported": imported, "configured": state()}, sys.stdout)
"""


def test_importing_the_harness_changes_no_jax_configuration_and_configure_does(tmp_path):
    env = {**os.environ, "CROSSCHECK_JAX_CACHE": str(tmp_path)}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["imported"] == seen["before"]
    configured = seen["configured"]
    assert configured["jax_enable_x64"] is True and configured["jax_compilation_cache_dir"] == str(tmp_path)
    assert configured["XLA_FLAGS"] is None
