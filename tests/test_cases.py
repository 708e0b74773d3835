"""Every registered case passes every check in every dtype (the crosscheck, as tests)."""

from __future__ import annotations

import pytest

from crosscheck import registry
from crosscheck.session import run

PARAMS = [
    pytest.param(case, dtype, id=f"{case.name}-{dtype}-cpu")
    for case in registry.all_cases()
    for dtype in registry.DTYPES
    if dtype in case.dtypes
]


@pytest.mark.parametrize("case,dtype", PARAMS)
def test_case_passes(case, dtype):
    report = run(cases=[case], dtypes=[dtype], device="cpu", trials=3, seed=0)
    assert report.results, "no checks ran"
    assert report.passed, "\n\n".join(r.message for r in report.failures)
