"""The soak's table: worst error / allowance per dtype and kind of check, from `--json` reports.

    python scripts/soak_table.py [--target 0.5] soak.json [more.json ...]

Prints a Markdown table (the one in docs/tolerances.md) and the case behind each worst ratio.
Reports of several runs (other seeds, trials or shape buckets) are read together. With
`--target R` it exits 1 when a check failed or a worst ratio reaches R (issue 12 asks for zero
failures and below 0.5), naming each.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

# A check's kind: what it compares, for the table's columns.
KINDS = {
    "forward": "values",
    "forward-fwd-rule": "values",
    "forward-reference": "values",
    "forward-module": "values",
    "grad": "gradients",
    "grad-autodiff": "gradients",
    "grad-module": "gradients",
    "hvp": "Hessian products",
    "hvp-autodiff": "Hessian products",
    "finite-diff": "finite differences",
}
# The contract check (grad-contract) reports no ratio: it is one verdict over all gradients.
COLUMNS = ["values", "gradients", "Hessian products", "finite differences"]


def _kind(check: str) -> str | None:
    return KINDS.get(check) or next((k for c, k in KINDS.items() if check.startswith(c + "-")), None)


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) or x in ("inf", "nan") else None


def worst(reports: list[dict]) -> tuple[dict, dict]:
    """The worst ratio per (dtype, kind) with the check behind it, and [checks, failed] per dtype."""
    worsts = defaultdict(lambda: (-1.0, ""))
    counts = defaultdict(lambda: [0, 0])
    for report in reports:
        for r in report["checks"]:
            counts[r["dtype"]][0] += 1
            counts[r["dtype"]][1] += not r["passed"]
            kind, ratio = _kind(r["check"]), _number(r.get("ratio"))
            if kind is None or ratio is None:
                continue
            where = f"{r['layer']} {r['check']} {r['tensor']}" + (f" [{r['shape']}]" if r.get("shape") else "")
            if ratio > worsts[r["dtype"], kind][0]:
                worsts[r["dtype"], kind] = (ratio, where)
    return dict(worsts), dict(counts)


def table(reports: list[dict]) -> str:
    worsts, counts = worst(reports)
    lines = [
        "| dtype | checks | failed | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    notes = []
    for dtype in ("float64", "float32", "bfloat16", "float16"):
        if dtype not in counts:
            continue
        cells = []
        for kind in COLUMNS:
            ratio, where = worsts.get((dtype, kind), (-1.0, ""))
            cells.append("-" if ratio < 0 else f"{ratio:.2f}")
            if ratio >= 0:
                notes.append(f"{dtype} {kind}: {ratio:.3f} at {where}")
        lines.append(f"| {dtype} | {counts[dtype][0]} | {counts[dtype][1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nWhere each worst ratio is:\n" + "\n".join(f"- {n}" for n in notes)


def missed(reports: list[dict], target: float) -> list[str]:
    """What misses the soak's target: each dtype with failed checks (a check without a ratio,
    grad-contract, fails too), each (dtype, kind) whose worst ratio reaches `target`."""
    worsts, counts = worst(reports)
    failed = [f"{dtype}: {n} checks failed" for dtype, (_, n) in counts.items() if n]
    return failed + [f"{dtype} {kind}: {ratio:.3f} at {where}" for (dtype, kind), (ratio, where) in worsts.items()
                     if ratio >= target]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python scripts/soak_table.py", description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", metavar="REPORT.json", help="`python -m crosscheck --json` reports")
    p.add_argument("--target", type=float, metavar="R", help="exit 1 when a check failed or a worst ratio reaches R, e.g. 0.5")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    if args.target is not None and not args.target > 0:
        print(f"soak_table: error: `--target` (={args.target!r}) must be positive", file=sys.stderr)
        return 2
    reports = []
    for path in args.reports:
        with open(path) as f:
            reports.append(json.load(f))
    print(table(reports))
    if args.target is None:
        return 0
    over = missed(reports, args.target)
    if over:
        print(f"\nAt or above the target {args.target}:\n" + "\n".join(f"- {o}" for o in over))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
