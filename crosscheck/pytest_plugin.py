"""The pytest plugin (entry point `pytest11`): one test item per registered case and dtype.

A test that takes the argument `crosscheck_case` runs once per case x dtype, with ids such as
`softsign-float32`; `crosscheck_case.check()` runs every check of that pair and fails with the
command line's text (each failure and its `Reproduce:` line)::

    import mypkg.crosscheck_cases  # registers the cases

    def test_crosscheck(crosscheck_case):
        crosscheck_case.check()

By default the items are the cases registered outside crosscheck (by the test's imports, by
`--crosscheck-cases MODULE` or by installed packages' `crosscheck.cases` entry points); the
marker `@pytest.mark.crosscheck(layers=[...], dtypes=[...], cases=[MODULE, ...])` picks others
(`layers` takes case or family names, built-in ones included). `pytest -n auto`
(pytest-xdist) spreads the items over processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from . import registry
from .plugins import load
from .options import check_dtypes

FIXTURE = "crosscheck_case"


def pytest_addoption(parser):
    group = parser.getgroup("crosscheck", "crosscheck: hand-written backward passes")
    group.addoption("--crosscheck-cases", action="append", default=[], metavar="MODULE",
                    help="import this module, which registers cases (repeatable)")
    group.addoption("--crosscheck-trials", type=int, default=8, metavar="N", help="random draws per case (default 8)")
    group.addoption("--crosscheck-shapes", type=int, default=2, metavar="N", help="shape buckets per case (default 2)")
    group.addoption("--crosscheck-seed", type=int, default=0, metavar="S", help="fixes every draw (default 0)")
    group.addoption("--crosscheck-device", default="cpu", help="auto, cpu or cuda (default cpu)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "crosscheck(layers=None, dtypes=None, cases=None): the cases, dtypes and case modules "
                   f"that a test taking `{FIXTURE}` runs over",
    )


@dataclass(frozen=True)
class CrosscheckCase:
    """One case in one dtype, with the run's options from the command line."""

    name: str
    dtype: str
    device: str = "cpu"
    trials: int = 8
    shapes: int = 2
    seed: int = 0

    def run(self):
        """Every check of the pair: the `Report`."""
        from .session import run

        return run(cases=[registry.get(self.name)], dtypes=[self.dtype], device=self.device, trials=self.trials,
                   seed=self.seed, shapes=self.shapes)

    def check(self):
        """`run`, failing the test with each failed check's message (as the CLI prints it)."""
        __tracebackhide__ = True
        from .report import format_failures

        report = self.run()
        if not report.passed:
            pytest.fail(format_failures(report), pytrace=False)
        return report


def pytest_generate_tests(metafunc):
    if FIXTURE not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("crosscheck")
    options = dict(marker.kwargs) if marker else {}
    config = metafunc.config
    load([*config.getoption("crosscheck_cases"), *(options.get("cases") or [])])
    layers = options.get("layers")
    cases = registry.select(layers) if layers else [c for c in registry.all_cases() if c.origin]
    dtypes = check_dtypes(options.get("dtypes"))
    run = dict(device=config.getoption("crosscheck_device"), trials=config.getoption("crosscheck_trials"),
               shapes=config.getoption("crosscheck_shapes"), seed=config.getoption("crosscheck_seed"))
    items = [CrosscheckCase(c.name, d, **run) for c in cases for d in dtypes if d in c.dtypes]
    metafunc.parametrize(FIXTURE, items, ids=[f"{i.name}-{i.dtype}" for i in items])
