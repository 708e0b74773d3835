"""`python -m crosscheck mutants`: every planted bug through the harness, and the kill table.

A mutant runs in each dtype asked for, each dtype judged on its own checks: a case run draws
the same values whatever else runs (`inputs.case_rng`), so a dtype's column is what a user who
trains only in that dtype would see.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._core import FORWARD_CHECKS, GRAD_CHECKS, Mutant, all_mutants

CHECK_ORDER = FORWARD_CHECKS + GRAD_CHECKS


@dataclass
class Verdict:
    """What the checks of one dtype made of one mutant."""

    mutant: Mutant
    dtype: str
    failed_checks: list[str]
    messages: list[str]

    @property
    def killed(self) -> bool:
        return bool(self.failed_checks)

    @property
    def as_expected(self) -> bool:
        """Killed by an expected check, and no forward check failed unless expected."""
        expected = set(self.mutant.expect)
        stray = [c for c in self.failed_checks if c not in expected and c not in GRAD_CHECKS]
        return bool(expected & set(self.failed_checks)) and not stray


def select(names: list[str] | None) -> list[Mutant]:
    mutants = all_mutants()
    if not names:
        return mutants
    from ..registry import get

    def groups(m):  # a mutant answers to its name, its prefix, its case and its case's family
        return {m.name, m.name.split("/")[0], m.case, get(m.case).family}

    known = set().union(*(groups(m) for m in mutants))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"Unknown mutant: {', '.join(map(repr, unknown))}. Valid names: mutant, case or family names, "
            f"e.g. {', '.join(sorted(m.name for m in mutants)[:5])}"
        )
    return [m for m in mutants if groups(m) & set(names)]


def run_mutants(mutants: list[Mutant], dtypes=("float64",), device="cpu", trials=2, seed=0) -> list[Verdict]:
    """One verdict per mutant and dtype of `dtypes` that its case runs in, mutant by mutant."""
    from ..registry import get
    from ..options import check_dtypes
    from ..session import run

    dtypes = check_dtypes(list(dtypes))  # refused before anything runs
    verdicts = []
    for m in mutants:
        report = run(cases=[m.apply()], dtypes=dtypes, device=device, trials=trials, seed=seed)
        for dtype in (d for d in dtypes if d in get(m.case).dtypes):
            failures = [r for r in report.failures if r.dtype == dtype]
            failed = sorted({r.check for r in failures}, key=CHECK_ORDER.index)
            verdicts.append(Verdict(m, dtype, failed, [r.message for r in failures]))
    return verdicts


def passed(verdicts: list[Verdict]) -> bool:
    """Every mutant killed as expected in at least one dtype, and none killed unexpectedly in
    any: a mutant that a dtype cannot see is reported (`format_table`), not failed."""
    caught = {v.mutant.name for v in verdicts if v.as_expected}
    return all(v.mutant.name in caught and (v.as_expected or not v.killed) for v in verdicts)


def _status(v: Verdict) -> str:
    return "killed" if v.as_expected else ("killed (unexpected check)" if v.killed else "SURVIVED")


def _cell(v: Verdict | None) -> str:
    """A dtype's column: the first check that killed the mutant, and how many more did."""
    if v is None:
        return "-"
    if not v.killed:
        return "SURVIVED"
    more = f" +{len(v.failed_checks) - 1}" if len(v.failed_checks) > 1 else ""
    return ("" if v.as_expected else "UNEXPECTED ") + v.failed_checks[0] + more


def _table(head, rows) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(head), line(["-" * w for w in widths]), *map(line, rows)]


def _rate(n: int, total: int) -> str:
    return f"{n} / {total} ({100 * n / total if total else 0.0:.1f}%)"


def format_table(verdicts: list[Verdict]) -> str:
    """One row per mutant (with one dtype: every check that killed it; with several: the first
    per dtype), then per dtype the kill rate and the mutants that survived it."""
    dtypes = list(dict.fromkeys(v.dtype for v in verdicts))
    mutants = list({v.mutant.name: v.mutant for v in verdicts}.values())
    by = {(v.mutant.name, v.dtype): v for v in verdicts}
    if len(dtypes) == 1:
        rows = [(v.mutant.name, v.mutant.side, ", ".join(v.failed_checks) or "-", _status(v)) for v in verdicts]
        lines = _table(("mutant", "side", "killed by", "status"), rows)
    else:
        rows = [(m.name, m.side, *(_cell(by.get((m.name, d))) for d in dtypes)) for m in mutants]
        lines = _table(("mutant", "side", *dtypes), rows)
    tally = []
    for d in dtypes:
        of = [v for v in verdicts if v.dtype == d]
        killed, odd = sum(v.as_expected for v in of), sum(v.killed and not v.as_expected for v in of)
        tally.append((d, str(len(of)), str(killed), str(odd), str(len(of) - killed - odd), _rate(killed, len(of))))
    lines += ["", *_table(("dtype", "mutants", "killed", "unexpected", "survived", "kill rate"), tally)]
    for d in dtypes:
        survivors = [v.mutant.name for v in verdicts if v.dtype == d and not v.as_expected]
        if survivors:
            lines.append(f"not killed as expected in {d}: {', '.join(survivors)}")
    caught = {v.mutant.name for v in verdicts if v.as_expected}
    label = "kill rate" if len(dtypes) == 1 else "killed in at least one dtype"
    return "\n".join([*lines, "", f"{label}: {_rate(len(caught), len(mutants))}"])
