"""Reports for people and CI: JUnit XML, Markdown, the headroom plot, and sharding."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from crosscheck import registry
from crosscheck.cli import main
from crosscheck.mutants import all_mutants
from crosscheck.options import UsageError
from crosscheck.session import run

FAST = ["--dtype", "float64", "--trials", "2", "--device", "cpu"]


@pytest.fixture
def broken_case():
    (m,) = [m for m in all_mutants() if m.name == "linear/input-grad-sign"]
    case = m.apply().replace(name="linear-broken", selector="")
    registry._REGISTRY[case.name] = case
    yield case
    del registry._REGISTRY[case.name]


def test_junit_markdown_and_plot_written_when_checks_fail(broken_case, tmp_path):
    junit, md, png = tmp_path / "r.xml", tmp_path / "r.md", tmp_path / "r.png"
    code = main(["--layer", "linear-broken", "--layer", "sigmoid", *FAST,
                 "--junit", str(junit), "--markdown", str(md), "--plot", str(png)])
    assert code == 1
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    failures = root.findall(".//testcase/failure")
    assert int(root.get("tests")) == len(cases) and int(root.get("failures")) == len(failures) > 0
    assert {s.get("name") for s in root.findall("testsuite")} == {"linear-broken-float64-cpu", "sigmoid-float64-cpu"}
    assert all("Reproduce: python -m crosscheck --layer linear-broken" in f.text for f in failures)
    text = md.read_text()
    assert "| `linear-broken` | float64 | cpu |" in text and "| FAIL |" in text and "| `sigmoid` | float64 | cpu |" in text
    assert "### Failures" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shards_are_disjoint_and_cover_every_case():
    names = [c.name for c in registry.all_cases()]
    seen = []
    for i in range(3):
        report = run(cases=None, layers=names[:5], dtypes=["float64"], trials=1, shard=(i, 3), device="cpu")
        seen.append({r.layer for r in report.results})
    assert set().union(*seen) == set(names[:5])
    assert sum(len(s) for s in seen) == 5


@pytest.mark.parametrize("text", ["3/3", "1/0", "a/b"])
def test_bad_shard_is_a_usage_error(text, capsys):
    assert main(["--shard", text, "--layer", "sigmoid", *FAST]) == 2
    assert "`--shard`" in capsys.readouterr().err


def test_soak_reports_seeds(capsys):
    assert main(["--layer", "sigmoid", *FAST, "--seeds", "3:9"]) == 0
    assert "seeds 3:9" in capsys.readouterr().out
    with pytest.raises(UsageError):
        run(layers=["sigmoid"], seed=range(0), device="cpu")


def test_soak_failure_names_the_failing_seeds(broken_case):
    report = run(cases=[broken_case], dtypes=["float64"], trials=2, seed=range(2, 6), device="cpu")
    (msg,) = [r.message for r in report.failures if r.check == "grad" and r.tensor == "grad of input"]
    assert "  Failing seeds: 2, 3, 4, 5" in msg
    assert msg.endswith("--layer linear-broken --dtype float64 --device cpu --seed 2 --trials 2")
