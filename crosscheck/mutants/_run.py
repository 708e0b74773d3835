"""`python -m crosscheck mutants`: every planted bug through the harness, and the kill table."""

from __future__ import annotations

from dataclasses import dataclass

from ._core import FORWARD_CHECKS, GRAD_CHECKS, Mutant, all_mutants

CHECK_ORDER = FORWARD_CHECKS + GRAD_CHECKS


@dataclass
class Verdict:
    mutant: Mutant
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


def run_mutants(mutants: list[Mutant], dtype="float64", device="cpu", trials=2, seed=0) -> list[Verdict]:
    from ..session import run

    verdicts = []
    for m in mutants:
        report = run(cases=[m.apply()], dtypes=[dtype], device=device, trials=trials, seed=seed)
        failed = sorted({r.check for r in report.failures}, key=CHECK_ORDER.index)
        verdicts.append(Verdict(m, failed, [r.message for r in report.failures]))
    return verdicts


def format_table(verdicts: list[Verdict]) -> str:
    head = ("mutant", "side", "killed by", "status")
    rows = [
        (v.mutant.name, v.mutant.side, ", ".join(v.failed_checks) or "-",
         "killed" if v.as_expected else ("killed (unexpected check)" if v.killed else "SURVIVED"))
        for v in verdicts
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    n = sum(v.as_expected for v in verdicts)
    rate = 100 * n / len(verdicts) if verdicts else 0.0
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows), "",
                      f"kill rate: {n} / {len(verdicts)} ({rate:.1f}%)"])
