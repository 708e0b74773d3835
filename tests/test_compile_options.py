"""Many trials compile with backend optimisations on; the usual few keep them off."""

from __future__ import annotations

import numpy as np

from crosscheck import adapters
from crosscheck.adapters import jax_adapter


def test_programs_over_many_trials_ask_for_optimisations(monkeypatch):
    jax_side = adapters.get("jax")
    asked = []
    real = jax_adapter._jit
    monkeypatch.setattr(jax_adapter, "_jit", lambda f, many: asked.append(many) or real(f, many))
    jax_side.release()  # every program is built again, through `_jit`

    def fn(x):
        return x * x

    for trials in (8, jax_adapter.MANY_TRIALS):
        x = jax_side.from_numpy(np.ones((trials, 3)), "float", "float64")
        outs, grads, _ = jax_side.vjp(fn, [x], [True], [x])
        np.testing.assert_allclose(grads[0], 2 * np.ones((trials, 3)))
    assert asked == [False, True]
