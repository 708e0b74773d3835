"""`nox -s bench` / `python -m crosscheck.bench`: what the crosscheck costs, next to what users
would otherwise run on the same layer and shapes.

Per case: the crosscheck's first run (compiling) and second run (compiled) in each dtype, and in
float64 against `torch.autograd.gradcheck` (slow and fast mode), `gradgradcheck`, and
`jax.test_util.check_grads(order=1 and 2, modes=["rev"])`, all timed in this one process. Then
the harness's own share of a run, how time grows with trials and input size, and the whole
CLI cold and warm in fresh processes. Ratios compare numbers from this one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


JACOBIAN_LIMIT = 2 * 10**8  # entries: 1.6 GB in float64


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _split(args, case):
    diff = [i for i, t in enumerate(case.tensors) if t.differentiable]
    others = {i: a for i, a in enumerate(args) if i not in diff}
    return diff, others


def _call(fn, diff, others, p):
    a = {**others, **dict(zip(diff, p))}
    out = fn(*(a[i] for i in range(len(a))))
    return out


def baselines(case, torch_side, jax_side) -> dict:
    """Seconds for gradcheck (slow, fast), gradgradcheck and check_grads (1, 2) on trial 0."""
    import torch
    from jax.test_util import check_grads

    from .inputs import Inputs

    inputs = Inputs.draw(case, "float64", [0], 1, torch_side)
    t_args = inputs.for_torch(torch_side, trial=0).args
    j_args = inputs.for_jax(jax_side, trial=0).args
    diff, t_others = _split(t_args, case)
    _, j_others = _split(j_args, case)
    t_in = tuple(t_args[i].detach().clone().requires_grad_() for i in diff)
    t_fn = lambda *p: _call(case.torch_fn, diff, t_others, p)  # noqa: E731
    j_fn = lambda *p: _call(case.jax_fn, diff, j_others, p)  # noqa: E731
    j_in = tuple(j_args[i] for i in diff)
    # gradcheck builds the dense Jacobian (n inputs x m outputs), gradgradcheck that of the
    # gradient ((n + m) x n): at linear width 256 the latter is 4.8e9 float64 entries (38 GB),
    # which took the machine's memory. Baselines past JACOBIAN_LIMIT entries are skipped.
    n = sum(a.numel() for a in t_in)
    m = sum(o.numel() for o in _as_tuple(t_fn(*t_in)))
    dense = {"gradcheck": n * m, "gradgradcheck": (n + m) * n}
    out = {}
    for label, thunk in (
        ("gradcheck", lambda: torch.autograd.gradcheck(t_fn, t_in)),
        ("gradcheck_fast", lambda: torch.autograd.gradcheck(t_fn, t_in, fast_mode=True)),
        ("gradgradcheck", lambda: torch.autograd.gradgradcheck(t_fn, t_in)),
        ("check_grads_1", lambda: check_grads(j_fn, j_in, order=1, modes=["rev"])),
        ("check_grads_2", lambda: check_grads(j_fn, j_in, order=2, modes=["rev"])),
    ):
        if dense.get(label, 0) > JACOBIAN_LIMIT:
            out[label] = None
            out[f"{label}_error"] = f"skipped: a dense Jacobian of {dense[label]:.2g} entries"
            continue
        try:
            out[label] = _timed(thunk)
        except Exception as e:  # a baseline that cannot run on a layer is reported, not fatal
            out[label] = None
            out[f"{label}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
    return out


def crosscheck_times(case, dtype, trials, torch_side, jax_side) -> dict:
    """First run (compiles) and second run (compiled) of every check; the harness's share."""
    from .runner import CaseRun

    first = CaseRun(case, dtype, "cpu", trials, 0, torch_side, jax_side)
    cold = _timed(first.run)
    second = CaseRun(case, dtype, "cpu", trials, 1, torch_side, jax_side)
    warm = _timed(second.run)
    frameworks = sum(v for k, v in second.clock.items() if k != "drawing inputs")
    return {"compile_and_run": cold, "run": warm, "frameworks": frameworks, "harness": warm - frameworks}


def cli_times(trials: int, layers: list[str]) -> dict:
    """The whole CLI in fresh processes: cold (empty cache folder), warm, and warm with `--jobs 2`."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CROSSCHECK_JAX_CACHE": cache}
        # The declared shapes only (`--shapes 1`): the targets are stated per case and dtype.
        cmd = [sys.executable, "-m", "crosscheck", "--device", "cpu", "--trials", str(trials), "--shapes", "1"]
        for layer in layers:
            cmd += ["--layer", layer]
        out = {}
        # Then warm again with the cases split over both cores' processes (`--jobs 2`).
        for label, more in (("cold", []), ("warm", []), ("warm_jobs2", ["--jobs", "2"])):
            start = time.perf_counter()
            done = subprocess.run(cmd + more, env=env, capture_output=True, text=True)
            out[label] = time.perf_counter() - start
            out[f"{label}_exit"] = done.returncode
    return out


def _fmt(x):
    return "-" if x is None else f"{x:.3g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m crosscheck.bench", description=__doc__.splitlines()[0])
    p.add_argument("--layer", action="append", help="cases or families (default: all)")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--out", default="reports", help="folder for bench.json and bench.png")
    p.add_argument("--skip-cli", action="store_true", help="skip the cold/warm CLI runs")
    p.add_argument("--dtype", action="append", help="dtypes for the crosscheck's own times (repeatable; default: "
                   "all four); the baselines run in float64, which gradcheck needs")
    args = p.parse_args(argv)

    from . import adapters, registry
    from .options import UsageError, check_dtypes

    cases = registry.select(args.layer)
    try:
        dtypes = check_dtypes(args.dtype)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {"trials": args.trials, "cases": {}, "trials_curve": {}, "size_curve": {}, "dtypes": dtypes}
    with adapters.opened("cpu") as (torch_side, jax_side, _):
        for case in cases:
            row = crosscheck_times(case, "float64", args.trials, torch_side, jax_side)
            row.update(baselines(case, torch_side, jax_side))
            row["by_dtype"] = {
                d: row if d == "float64" else crosscheck_times(case, d, args.trials, torch_side, jax_side)
                for d in dtypes
                if d in case.dtypes
            }
            row["by_dtype"] = {d: {k: r[k] for k in ("compile_and_run", "run")} for d, r in row["by_dtype"].items()}
            result["cases"][case.name] = row
            print(f"{case.name:<28} crosscheck {_fmt(row['run'])} s (first {_fmt(row['compile_and_run'])} s)  "
                  f"gradcheck {_fmt(row['gradcheck'])}  fast {_fmt(row['gradcheck_fast'])}  "
                  f"gradgrad {_fmt(row['gradgradcheck'])}  check_grads1 {_fmt(row['check_grads_1'])}  "
                  f"check_grads2 {_fmt(row['check_grads_2'])}", flush=True)
        for name in [c.name for c in cases][:3]:
            case = registry.get(name)
            curve = {}
            for k in (1, 4, 16, 64, 256, 1024):
                curve[k] = crosscheck_times(case, "float64", k, torch_side, jax_side)["run"]
            result["trials_curve"][name] = curve
        from .cases.linear import _case

        for width in (4, 16, 64, 256):
            case = _case(f"linear-{width}", (8, 1), width, width + 3)
            row = crosscheck_times(case, "float64", args.trials, torch_side, jax_side)
            row.update(baselines(case, torch_side, jax_side))
            result["size_curve"][width] = row
    if not args.skip_cli:
        names = [c.name for c in cases]
        result["cli"] = cli_times(args.trials, names if args.layer else [])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(format_table(result))
    write_chart(result, out / "bench.png")
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def format_table(result) -> str:
    """Ratios of each baseline to one crosscheck run (all checks, all trials), per case."""
    others = [d for d in result.get("dtypes", []) if d != "float64"]
    head = ("case", "crosscheck s", "first run s", "harness %", "gradcheck x", "fast x", "gradgrad x", "check_grads1 x",
            "check_grads2 x", *(f"{d} s" for d in others))
    rows = []
    for name, r in result["cases"].items():
        by_dtype = r.get("by_dtype", {})
        rows.append((
            name, _fmt(r["run"]), _fmt(r["compile_and_run"]), _fmt(100 * r["harness"] / r["frameworks"]),
            *(_fmt(_ratio(r[k], r["run"])) for k in ("gradcheck", "gradcheck_fast", "gradgradcheck", "check_grads_1", "check_grads_2")),
            *(_fmt(by_dtype[d]["run"]) if d in by_dtype else "-" for d in others),
        ))
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    lines = [line(head), line(["-" * w for w in widths]), *map(line, rows)]
    total = {k: sum(r[k] or 0 for r in result["cases"].values()) for k in ("run", "frameworks", "harness", "gradcheck", "gradgradcheck", "check_grads_2")}
    lines += ["", *dtype_lines(result)]
    lines += ["", f"all cases, float64, {result['trials']} trials: crosscheck {total['run']:.1f} s; "
              f"gradcheck {total['gradcheck']:.1f} s, gradgradcheck {total['gradgradcheck']:.1f} s, "
              f"check_grads(order=2) {total['check_grads_2']:.1f} s; harness share "
              f"{100 * total['harness'] / max(total['frameworks'], 1e-9):.0f}% of the frameworks' time"]
    for name, curve in result["trials_curve"].items():
        lines.append(f"trials curve {name}: " + ", ".join(f"{k}: {_fmt(v)} s" for k, v in curve.items())
                     + f" (1024 trials cost {curve[1024] / curve[1]:.1f}x one trial)")
    for width, r in result["size_curve"].items():
        lines.append(f"linear width {width}: crosscheck {_fmt(r['run'])} s, gradcheck {_fmt(r['gradcheck'])} s "
                     f"({_fmt(_ratio(r['gradcheck'], r['run']))}x)")
    if "cli" in result:
        c = result["cli"]
        lines.append(f"whole CLI, {result['trials']} trials, all dtypes, declared shapes: cold {c['cold']:.1f} s (exit {c['cold_exit']}), "
                     f"warm {c['warm']:.1f} s (exit {c['warm_exit']})"
                     + (f", warm with --jobs 2 {c['warm_jobs2']:.1f} s (exit {c['warm_jobs2_exit']})" if "warm_jobs2" in c else ""))
    lines += ["", "targets (all cases, four dtypes, 8 trials, on 2 CPU cores):", *targets(result, total)]
    return "\n".join(lines)


def dtype_lines(result) -> list[str]:
    """The crosscheck's own time per dtype, summed over cases: compiled run and first run."""
    lines = [f"crosscheck per dtype, all cases, {result['trials']} trials (compiled run / first run):"]
    for d in result.get("dtypes", ["float64"]):
        rows = [r["by_dtype"][d] for r in result["cases"].values() if d in r.get("by_dtype", {})]
        if rows:
            run, first = sum(r["run"] for r in rows), sum(r["compile_and_run"] for r in rows)
            lines.append(f"  {d}: {run:.1f} s / {first:.1f} s over {len(rows)} cases")
    return lines


def targets(result, total) -> list[str]:
    """Each target, what this run measured, and whether it holds."""
    rows = []
    if "cli" in result:
        c = result["cli"]
        rows.append(("whole CLI cold (empty compilation cache)", c["cold"], 60.0, "s"))
        rows.append(("whole CLI warm (compilation cache filled)", c["warm"], 20.0, "s"))
        if "warm_jobs2" in c:
            rows.append(("whole CLI warm, --jobs 2", c["warm_jobs2"], 20.0, "s"))
    if total["frameworks"] > 0:
        rows.append(("harness share of the frameworks' time", 100 * total["harness"] / total["frameworks"], 30.0, "%"))
    for name, curve in result["trials_curve"].items():
        rows.append((f"1024 trials / 1 trial ({name})", curve[1024] / curve[1], 1024 / 8, "x"))
    return [f"  {'holds' if v < limit else 'MISSED'}: {label}: {v:.3g} {unit} (target < {limit:g} {unit})" for label, v, limit, unit in rows]


def write_chart(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.25 * len(result["cases"]) + 2))
    names = list(result["cases"])
    for k, key in enumerate(("gradcheck", "gradgradcheck", "check_grads_2")):
        vals = [_ratio(result["cases"][n][key], result["cases"][n]["run"]) or 0 for n in names]
        ax1.barh([i + 0.27 * (k - 1) for i in range(len(names))], vals, height=0.27, label=key)
    ax1.axvline(1, color="k", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_yticks(range(len(names)))
    ax1.set_yticklabels(names, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlabel("baseline time / one crosscheck run (all checks, all trials)")
    ax1.legend(fontsize=7)
    for name, curve in result["trials_curve"].items():
        ks = [int(k) for k in curve]
        ax2.plot(ks, list(curve.values()), marker="o", label=name)
    ks = [1, 1024]
    first = next(iter(result["trials_curve"].values()), None)
    if first:
        base = list(first.values())[0]
        ax2.plot(ks, [base, base * 1024], ls="--", color="gray", label="1024 x one trial")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("trials")
    ax2.set_ylabel("seconds per crosscheck run")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
