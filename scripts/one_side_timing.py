"""What each tool of docs/own_layers.md ("Time, one layer") takes on `linear`, in one process:
the first call and the best of two later calls.

    python scripts/one_side_timing.py

The one call (`crosscheck.check`) on one side, with that side's reference, in four dtypes and in
float64 (8 trials), against gradcheck + gradgradcheck and `check_grads(order=2)` in float64 on
one draw, as scripts/one_side_catalogue.py runs them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402

import crosscheck  # noqa: E402
from crosscheck.registry import get  # noqa: E402
from one_side_catalogue import DTYPES, jax_check_grads, torch_gradcheck  # noqa: E402


def one_call(case, side: str, dtypes):
    fn, ref = getattr(case, f"{side}_fn"), getattr(case, f"{side}_ref")
    return lambda: crosscheck.check(**{f"{side}_fn": fn, f"{side}_ref": ref}, inputs=case.inputs, params=case.params,
                                    out_layouts=case.out_layouts, dtypes=dtypes, trials=8, name=case.name).passed


def main() -> int:
    case = get("linear").replace(shapes=None)

    def check_grads():
        with jax.enable_x64(True):  # float64, as gradcheck's; a run of the one call leaves x64 as it was
            return jax_check_grads(case, case.jax_fn, True)

    rows = [
        ("crosscheck.check, torch side, four dtypes", one_call(case, "torch", DTYPES)),
        ("crosscheck.check, torch side, float64", one_call(case, "torch", ["float64"])),
        ("gradcheck + gradgradcheck", lambda: torch_gradcheck(case, case.torch_fn, True)),
        ("crosscheck.check, JAX side, four dtypes", one_call(case, "jax", DTYPES)),
        ("crosscheck.check, JAX side, float64", one_call(case, "jax", ["float64"])),
        ("check_grads(order=2)", check_grads),
    ]
    for label, f in rows:
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            passed = f()
            seconds.append(time.perf_counter() - start)
            if not passed:
                raise SystemExit(f"{label} failed the correct layer")
        print(f"{label}: first call {seconds[0]:.2f} s, later calls {min(seconds[1:]):.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
