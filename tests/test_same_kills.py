"""scripts/same_kills.py reads the mutants' one-dtype table as `mutants` writes it."""

from __future__ import annotations

from crosscheck.mutants._core import Mutant
from crosscheck.mutants._run import Verdict, format_table
from scripts.same_kills import differences, kills


def _table(killed_by: dict[str, list[str]]) -> str:
    verdicts = [Verdict(Mutant(name, "linear", "jax", None, ("grad",), ""), "float64", checks, [])
                for name, checks in killed_by.items()]
    return format_table(verdicts)


def test_the_checks_that_killed_each_mutant_are_read_back_and_compared():
    before = kills(_table({"linear/a": ["grad", "hvp"], "linear/long-name-b": [], "linear/c": ["forward"]}))
    assert before == {
        "linear/a": ("grad, hvp", "killed"),
        "linear/long-name-b": ("-", "SURVIVED"),
        "linear/c": ("forward", "killed (unexpected check)"),
    }
    after = kills(_table({"linear/a": ["grad"], "linear/long-name-b": [], "linear/d": ["grad"]}))
    assert differences(before, after) == ["linear/a: killed by grad, hvp (killed) became grad (killed)"]
