"""Whether two runs of `python -m crosscheck mutants --dtype D` (one dtype, its stdout saved)
killed each mutant by the same checks: `python scripts/same_kills.py BEFORE.txt AFTER.txt`.

Mutant by mutant: the same checks failed (the "killed by" column) and the same status. A
mutant in only one run is listed apart (a catalogue that grew), not counted as a difference.
Exit 0 when every common mutant agrees, 1 with each difference listed.
"""

from __future__ import annotations

import sys

HEAD = ("mutant", "side", "killed by", "status")


def kills(text: str) -> dict[str, tuple[str, str]]:
    """`{mutant: (killed by, status)}` from a one-dtype table: the columns lie where the
    dashes under the header lie."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.split()[:2] == ["mutant", "side"]), None)
    if start is None or "killed by" not in lines[start]:
        raise ValueError(f"no one-dtype mutant table (header {' '.join(HEAD)!r}) in the text")
    dashes, spans, at = lines[start + 1], [], 0
    for part in dashes.split("  "):
        spans.append((at, at + len(part)))
        at += len(part) + 2
    out = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0] :].strip()]
        out[cells[0]] = (cells[2], cells[3])
    return out


def differences(before: dict, after: dict) -> list[str]:
    return [f"{m}: killed by {before[m][0]} ({before[m][1]}) became {after[m][0]} ({after[m][1]})"
            for m in before if m in after and before[m] != after[m]]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    with open(argv[0]) as f, open(argv[1]) as g:
        before, after = kills(f.read()), kills(g.read())
    found = differences(before, after)
    for line in found:
        print(line)
    common = [m for m in before if m in after]
    for label, names in (("only before", [m for m in before if m not in after]), ("only after", [m for m in after if m not in before])):
        if names:
            print(f"{label}: {', '.join(names)}")
    print(f"{len(common) - len(found)} of {len(common)} mutants killed by the same checks")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
