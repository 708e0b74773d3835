"""What a person reads: failure messages, then one summary row per case x dtype x device."""

from __future__ import annotations

from .runner import worst_ratio
from .session import Report


def summary_rows(report: Report) -> list[dict]:
    groups: dict[tuple, list] = {}
    for r in report.results:
        groups.setdefault((r.layer, r.dtype, r.device), []).append(r)
    rows = []
    for (layer, dtype, device), rs in groups.items():
        failed = [r for r in rs if not r.passed]
        rows.append(
            {
                "layer": layer,
                "dtype": dtype,
                "device": device,
                "checks": len(rs),
                "failed": len(failed),
                "worst": worst_ratio(rs),
                "status": "FAIL" if failed else "ok",
            }
        )
    return rows


def format_summary(report: Report) -> str:
    rows = summary_rows(report)
    head = ("layer", "dtype", "device", "checks", "failed", "worst err/tol", "status")
    body = [
        (r["layer"], r["dtype"], r["device"], str(r["checks"]), str(r["failed"]), _ratio(r["worst"]), r["status"])
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths]), *map(line, body)]
    n_fail = len(report.failures)
    out.append("")
    out.append(
        f"{len(report.results) - n_fail} passed, {n_fail} failed "
        f"({len(rows)} case x dtype runs, {report.trials} trials, "
        f"{'seeds' if isinstance(report.seed, str) else 'seed'} {report.seed}, device {report.device})"
    )
    return "\n".join(out)


def _ratio(x: float) -> str:
    return "inf" if x == float("inf") else f"{x:.3g}"


def format_failures(report: Report) -> str:
    return "\n\n".join(r.message for r in report.failures)
