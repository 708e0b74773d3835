"""A long run drops its compiled programs before the kernel's memory-map limit aborts it."""

from __future__ import annotations

from crosscheck import adapters, registry
from crosscheck.adapters import jax_memory, jax_programs
from crosscheck.runner import run_case


def _programs() -> int:
    return jax_programs.program.cache_info().currsize + jax_programs.fused_program.cache_info().currsize


def test_programs_are_kept_below_the_map_budget_and_dropped_above_it(monkeypatch):
    torch_side, jax_side = adapters.get("torch"), adapters.get("jax")
    case = registry.get("linear")
    monkeypatch.setattr(jax_side.budget, "count", lambda: jax_memory.MAP_BUDGET)
    results = run_case(case, "float32", "cpu", 2, 0, torch_side, jax_side)
    assert all(r.passed for r in results) and _programs() > 0

    monkeypatch.setattr(jax_side.budget, "count", lambda: jax_memory.MAP_BUDGET + 1)
    monkeypatch.setattr(jax_side.budget, "case_runs", 8)  # the next run counts
    again = run_case(case, "float32", "cpu", 2, 0, torch_side, jax_side)
    assert _programs() == 0
    # Dropping the programs changes nothing the checks see.
    assert [(r.check, r.tensor, r.max_abs_err) for r in again] == [(r.check, r.tensor, r.max_abs_err) for r in results]


def test_without_a_count_every_64th_case_run_releases(monkeypatch):
    jax_side = adapters.get("jax")
    monkeypatch.setattr(jax_side.budget, "count", lambda: None)
    monkeypatch.setattr(jax_side.budget, "case_runs", 0)
    assert [jax_side.relieve() for _ in range(128)].count(True) == 2


def test_the_mappings_are_counted_every_8th_run(monkeypatch):
    jax_side = adapters.get("jax")
    counts = []

    def regions():
        counts.append(jax_side.budget.case_runs)
        return level

    monkeypatch.setattr(jax_side.budget, "count", regions)
    level = jax_memory.MAP_BUDGET
    assert not any(jax_side.relieve() for _ in range(16))
    assert counts == [1, 9]
    level = jax_memory.MAP_BUDGET + 1
    assert [jax_side.relieve() for _ in range(8)] == [True] + [False] * 7
    assert counts == [1, 9, 17]
