"""Every registered case passes every check in every dtype (the crosscheck, as tests).

Each test is a small soak: seeds 0..23 batched into one run, so CI sees two dozen independent
draws of every case on every change for the price of one compile.
"""

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
    report = run(cases=[case], dtypes=[dtype], device="cpu", trials=1, seed=range(24))
    assert report.results, "no checks ran"
    assert report.passed, "\n\n".join(r.message for r in report.failures)
