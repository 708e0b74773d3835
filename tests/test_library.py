"""crosscheck as a library: its version, its command line's help, and its subcommands."""

from __future__ import annotations

import re

import crosscheck
from crosscheck.cli import main


def test_version_is_the_distributions(capsys):
    assert re.fullmatch(r"\d+\.\d+\.\d+.*|0\+unknown", crosscheck.__version__)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"crosscheck {crosscheck.__version__}"


def test_help_lists_the_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("mutants", "new NAME", "port A B", "--cases"):
        assert re.search(rf"^\s+{re.escape(word)}", out, re.M), word


def test_without_a_terminal_progress_is_a_plain_line_now_and_then():
    import io

    from crosscheck.progress import PlainProgress

    now = [0.0]
    out = io.StringIO()
    p = PlainProgress(every=60, stream=out, clock=lambda: now[0])
    p.start(48)
    for t in (0, 20, 59, 61, 90, 125, 130):
        now[0] = t
        p.step("case")
    now[0] = 200
    p.show(40, 48, "case")  # --jobs: the shards' sum
    assert out.getvalue().splitlines() == [
        "crosscheck: 3 of 48 case runs done, 1m01s elapsed",
        "crosscheck: 5 of 48 case runs done, 2m05s elapsed",
        "crosscheck: 40 of 48 case runs done, 3m20s elapsed",
    ]
