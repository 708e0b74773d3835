"""With several JAX devices, trials are split across them; results do not depend on it.

Two CPU devices stand in for several GPUs (`--xla_force_host_platform_device_count`), in a
fresh process: the flag must be set before JAX starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys
from crosscheck import adapters
from crosscheck.frameworks import _jax
from crosscheck.session import run

alone = []  # JAX stages run outside their case run's one program
value = _jax.JaxSide.value

def counted(self, stage, plan, inputs):
    if stage in _jax._fused_stages(plan) and stage not in self.fused:
        alone.append(stage)
    return value(self, stage, plan, inputs)

_jax.JaxSide.value = counted

jax_side = adapters.get("jax")
x = jax_side.from_numpy(__import__("numpy").zeros((4, 3)), "float", "float64")
odd = jax_side.from_numpy(__import__("numpy").zeros((3, 3)), "float", "float64")
report = run(layers=["linear"], dtypes=["float64", "float32"], trials=4, shapes=1)
json.dump({
    "devices": len(jax_side.devices),
    "alone": len(alone),
    "even": sorted(str(d) for d in x.devices()),
    "odd": sorted(str(d) for d in odd.devices()),
    "checks": [[r.layer, r.dtype, r.check, r.tensor, r.compared, r.passed, r.max_abs_err] for r in report.results],
}, sys.stdout)
"""


def _run(devices: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "CROSSCHECK_JAX_CACHE": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_trials_split_across_devices_and_every_check_agrees_with_one_device():
    one, two = _run(1), _run(2)
    assert one["devices"] == 1 and two["devices"] == 2
    assert len(two["even"]) == 2, "4 trials over 2 devices: each holds half"
    assert len(two["odd"]) == 1, "3 trials do not split evenly: one device holds them"
    assert one["alone"] == two["alone"] == 0, "split trials and the module's one trial run in one program"
    assert [c[:5] for c in one["checks"]] == [c[:5] for c in two["checks"]]
    assert all(c[5] for c in one["checks"] + two["checks"])
    # Same draws, same programs; only XLA's per-device batch differs, which may reorder a
    # reduction: errors agree to within a few roundings, never by a different answer.
    for a, b in zip(one["checks"], two["checks"]):
        if a[6] is not None:
            assert abs(a[6] - b[6]) <= max(1e-6 * abs(a[6]), 4e-7 if a[1] == "float32" else 1e-15), (a, b)
