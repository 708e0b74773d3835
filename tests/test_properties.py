"""Property-based search over shapes and options (Hypothesis): each example is a fresh case
built by the family's own case factory and run through every float64 check. A failure
shrinks to the smallest shapes and options that still fail, and prints them."""

from __future__ import annotations

import importlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crosscheck.session import run

# Each example compiles fresh programs (seconds), so the search is small per run; the seed
# is derandomized so CI explores the same examples every time.
SETTINGS = settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _passes(case):
    report = run(cases=[case], dtypes=["float64"], device="cpu", trials=2, seed=0)
    assert report.results and report.passed, "\n\n".join(r.message for r in report.failures)


@SETTINGS
@given(
    batch=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    n_in=st.integers(1, 7),
    n_out=st.integers(1, 7),
    bias=st.booleans(),
    strided=st.booleans(),
)
def test_linear_over_shapes(batch, n_in, n_out, bias, strided):
    cases = importlib.import_module("crosscheck.cases.linear")
    _passes(cases._case("linear-h", tuple(batch), n_in, n_out, bias=bias, noncontiguous=strided))


@st.composite
def _conv2d(draw):
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, 1))
    h = draw(st.integers(dilation * (kh - 1) + 1, 7)) if dilation * (kh - 1) + 1 <= 7 else 7
    w = draw(st.integers(dilation * (kw - 1) + 1, 7)) if dilation * (kw - 1) + 1 <= 7 else 7
    n = draw(st.integers(1, 2))
    return (n, c_in, h, w), (c_out, c_in // groups, kh, kw), dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                                                                  bias=draw(st.booleans()))


@SETTINGS
@given(_conv2d())
def test_conv2d_over_shapes_and_options(spec):
    x_shape, w_shape, options = spec
    cases = importlib.import_module("crosscheck.cases.conv")
    _passes(cases._conv_case("conv2d-h", x_shape, w_shape, **options))


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_permute_over_shapes(shape, data):
    dims = data.draw(st.permutations(range(len(shape))))
    cases = importlib.import_module("crosscheck.cases.shape")
    _passes(cases._permute_case("permute-h", tuple(shape), tuple(dims)))
