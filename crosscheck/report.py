"""What a person reads: failure messages, then one summary row per case x dtype x device."""

from __future__ import annotations

from .results import Report, worst_ratio


def summary_rows(report: Report) -> list[dict]:
    rows = []
    for (layer, dtype, device), rs in report.groups().items():
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
        f"({len(rows)} case x dtype runs, {report.trials} trials, {report.shapes} shape bucket{'s' if report.shapes > 1 else ''}, "
        f"{'seeds' if isinstance(report.seed, str) else 'seed'} {report.seed}, device {report.device})"
    )
    return "\n".join(out)


def _ratio(x: float) -> str:
    return "inf" if x == float("inf") else f"{x:.3g}"


def format_failures(report: Report) -> str:
    return "\n\n".join(r.message for r in report.failures)


def format_markdown(report: Report) -> str:
    """The summary table as GitHub-flavoured Markdown (for CI job summaries)."""
    rows = summary_rows(report)
    n_fail = len(report.failures)
    status = "all checks passed" if not n_fail else f"{n_fail} checks failed"
    out = [
        f"## crosscheck: {status}",
        "",
        f"{len(report.results) - n_fail} passed, {n_fail} failed; {report.trials} trials, {report.shapes} shape buckets, "
        f"seed {report.seed}, device {report.device}.",
        "",
        "| layer | dtype | device | checks | failed | worst err/tol | status |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        status = "FAIL" if r["failed"] else "ok"
        out.append(
            f"| `{r['layer']}` | {r['dtype']} | {r['device']} | {r['checks']} | {r['failed']} | {_ratio(r['worst'])} | {status} |"
        )
    if report.failures:
        out += ["", "### Failures", ""]
        for r in report.failures:
            out += ["```", r.message, "```", ""]
    return "\n".join(out) + "\n"


def write_junit(report: Report, path: str) -> None:
    """JUnit XML: one test suite per case x dtype x device, one test case per check."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", name="crosscheck", tests=str(len(report.results)), failures=str(len(report.failures)))
    for (layer, dtype, device), rs in report.groups().items():
        suite = ET.SubElement(
            suites, "testsuite", name=f"{layer}-{dtype}-{device}", tests=str(len(rs)),
            failures=str(sum(not r.passed for r in rs)),
        )
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=f"crosscheck.{layer}.{dtype}.{device}", name=r.id.test_name())
            if not r.passed:
                failure = ET.SubElement(case, "failure", message=r.message.splitlines()[1].strip() if "\n" in r.message else r.message)
                failure.text = r.message
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
