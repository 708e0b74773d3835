"""The soak's table: worst error / allowance per dtype and kind of check, from `--json` reports.

    python scripts/soak_table.py soak.json [more.json ...]

Prints a Markdown table (the one in docs/tolerances.md) and the case behind each worst ratio.
Reports of several runs (other seeds, trials or shape buckets) are read together.
"""

from __future__ import annotations

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


def table(reports: list[dict]) -> str:
    worst = defaultdict(lambda: (-1.0, ""))
    counts = defaultdict(lambda: [0, 0])
    for report in reports:
        for r in report["checks"]:
            counts[r["dtype"]][0] += 1
            counts[r["dtype"]][1] += not r["passed"]
            kind, ratio = _kind(r["check"]), _number(r.get("ratio"))
            if kind is None or ratio is None:
                continue
            where = f"{r['layer']} {r['check']} {r['tensor']}" + (f" [{r['shape']}]" if r.get("shape") else "")
            if ratio > worst[r["dtype"], kind][0]:
                worst[r["dtype"], kind] = (ratio, where)
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
            ratio, where = worst.get((dtype, kind), (-1.0, ""))
            cells.append("-" if ratio < 0 else f"{ratio:.2f}")
            if ratio >= 0:
                notes.append(f"{dtype} {kind}: {ratio:.3f} at {where}")
        lines.append(f"| {dtype} | {counts[dtype][0]} | {counts[dtype][1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nWhere each worst ratio is:\n" + "\n".join(f"- {n}" for n in notes)


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    reports = []
    for path in paths:
        with open(path) as f:
            reports.append(json.load(f))
    print(table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
