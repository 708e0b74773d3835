"""`crosscheck.check` on one framework alone against gradcheck + gradgradcheck (torch) and
`jax.test_util.check_grads(order=2)` (JAX): which planted bugs each catches, one side at a
time, and what each takes on one layer. Writes the table that docs/own_layers.md holds.

    python scripts/one_side_catalogue.py [--only NAME]... [--json PATH]

Every mutant (crosscheck/mutants/) runs on its own side only: the one call gets the mutated
function, with and without the case's reference forward of that side; gradcheck and
check_grads get the mutated function, in float64, on inputs drawn as the case draws them. Each
tool also runs the unmutated function first: a tool that fails a correct layer catches nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from crosscheck.mutants import all_mutants  # noqa: E402
from crosscheck.registry import get  # noqa: E402

DTYPES = ["float64", "float32", "bfloat16", "float16"]


def _draw(case, seed=0):
    rng = np.random.default_rng(seed)
    return [np.asarray(t.draw(rng, (1, *t.shape)), dtype=np.float64 if t.kind == "float" else None)[0] for t in case.tensors]


def _of_differentiable(case, fn, args):
    """`fn` as a function of the differentiable arguments alone, the others fixed at `args`."""
    diff = [i for i, t in enumerate(case.tensors) if t.differentiable]

    def f(*d):
        full = list(args)
        for i, x in zip(diff, d):
            full[i] = x
        return fn(*full)

    return f, [args[i] for i in diff]


def torch_gradcheck(case, fn, second_order) -> bool:
    import torch

    args = [torch.tensor(a, dtype=torch.float64 if t.kind == "float" else None, requires_grad=t.differentiable)
            for t, a in zip(case.tensors, _draw(case))]
    f, primals = _of_differentiable(case, fn, args)
    try:
        ok = torch.autograd.gradcheck(f, primals, raise_exception=False)
        return bool(ok and (not second_order or torch.autograd.gradgradcheck(f, primals, raise_exception=False)))
    except Exception:  # a backward that raises is caught
        return False


def jax_check_grads(case, fn, second_order) -> bool:
    import jax.numpy as jnp
    from jax.test_util import check_grads

    args = [jnp.asarray(t.layout.to_jax(a[None])[0]) for t, a in zip(case.tensors, _draw(case))]
    f, primals = _of_differentiable(case, fn, args)
    try:
        check_grads(f, tuple(primals), order=2 if second_order else 1, modes=["rev"])
        return True
    except Exception:  # AssertionError on a mismatch; a backward that raises is caught too
        return False


def one_call(case, side, fn, with_ref, dtypes, trials=2) -> bool:
    import crosscheck

    ref = {f"{side}_ref": getattr(case, f"{side}_ref")} if with_ref else {}
    report = crosscheck.check(**{f"{side}_fn": fn}, **ref, inputs=case.inputs, params=case.params,
                              out_layouts=case.out_layouts, second_order=case.second_order, dtypes=dtypes,
                              trials=trials, name=case.name)
    return report.passed


def tools(case, side, fn):
    """Each tool's verdict (True: passed) on `fn`, the function of `side`."""
    out = {
        "check, with reference": one_call(case, side, fn, True, DTYPES),
        "check, no reference": one_call(case, side, fn, False, DTYPES),
    }
    base = torch_gradcheck if side == "torch" else jax_check_grads
    out["gradcheck+gradgradcheck" if side == "torch" else "check_grads(order=2)"] = base(case, fn, case.second_order)
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", action="append", help="mutant, case or family name (repeatable)")
    p.add_argument("--json", help="write every verdict here")
    args = p.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 for check_grads, as the harness has it
    mutants = [m for m in all_mutants() if not args.only or {m.name, m.case, get(m.case).family} & set(args.only)]
    rows, clean = [], {}
    for m in mutants:
        case = get(m.case).replace(shapes=None)
        key = (m.case, m.side)
        if key not in clean:
            clean[key] = tools(case, m.side, getattr(case, f"{m.side}_fn"))
        start = time.perf_counter()
        verdicts = tools(case, m.side, m.fn)
        # Caught: the mutant fails a tool that passes the correct layer.
        caught = {k: clean[key][k] and not v for k, v in verdicts.items()}
        rows.append({"mutant": m.name, "side": m.side, "caught": caught, "clean": clean[key], "seconds": time.perf_counter() - start})
        print(m.name, m.side, {k: ("caught" if v else "-") for k, v in caught.items()}, flush=True)
    for side in ("torch", "jax"):
        rs = [r for r in rows if r["side"] == side]
        for tool in (rs[0]["caught"] if rs else {}):
            n = sum(r["caught"][tool] for r in rs)
            false = sorted({r["mutant"].split("/")[0] for r in rs if not r["clean"][tool]})
            print(f"{side}: {tool}: caught {n} of {len(rs)}" + (f"; fails correct layers: {', '.join(false)}" if false else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
