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
