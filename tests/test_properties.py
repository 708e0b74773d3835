"""Property-based search over each family's shapes and options (Hypothesis).

Every case declares the ranges of its shapes and options (`Case.shapes`); here Hypothesis
picks a case of the family and a point of its ranges, builds it with the case's own factory
and runs every float64 check on it. A failure shrinks towards the first case of the family and
the smallest values of each range, and prints the point that still fails.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crosscheck import registry
from crosscheck.session import run

# Each example compiles fresh programs (about a second), so the search is small per family;
# derandomized, so CI explores the same points every time (the soak and `--shapes` add others).
SETTINGS = settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("family", registry.families())
@SETTINGS
@given(data=st.data())
def test_family_over_its_shape_space(family, data):
    names = [c.name for c in registry.all_cases() if c.family == family and c.shapes is not None]
    case = registry.get(data.draw(st.sampled_from(names), label="case"))
    dims = {k: data.draw(st.sampled_from(list(v)), label=k) for k, v in case.shapes.ranges.items()}
    report = run(cases=[case.shapes.build(**dims)], dtypes=["float64"], device="cpu", trials=2, seed=0)
    assert report.results and report.passed, "\n\n".join(r.message for r in report.failures)
