"""Whether two `--json` reports hold the same checks: `python scripts/same_report.py A.json B.json`.

Check for check, in order: the same id (layer, dtype, device, check, tensor, compared, shape),
the same verdict, and errors and allowances equal up to `RELATIVE` (a refactoring moves code,
not arithmetic; a reordered reduction in a recompiled program may still move the last bits).
Exit 0 when they agree, 1 with each difference listed.
"""

from __future__ import annotations

import json
import math
import sys

ID = ("layer", "dtype", "device", "check", "tensor", "compared", "shape")
NUMBERS = ("max_abs_err", "max_rel_err", "atol", "rtol", "ratio")
RELATIVE = 1e-6
# Differences listed before the rest are only counted.
SHOWN = 40


def _number(x):
    return float(x) if isinstance(x, str) else x  # "inf", "-inf", "nan" as the reports write them


def _close(a, b) -> bool:
    a, b = _number(a), _number(b)
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= RELATIVE * max(abs(a), abs(b))


def differences(before: dict, after: dict) -> list[str]:
    out = []
    a, b = before["checks"], after["checks"]
    if len(a) != len(b):
        out.append(f"{len(a)} checks before, {len(b)} after")
    for i, (x, y) in enumerate(zip(a, b)):
        ident = tuple(x.get(k, "") for k in ID)
        if ident != tuple(y.get(k, "") for k in ID):
            out.append(f"check {i}: {ident} became {tuple(y.get(k, '') for k in ID)}")
            continue
        if x["passed"] != y["passed"]:
            out.append(f"check {i} {ident}: passed {x['passed']} became {y['passed']}")
        for k in NUMBERS:
            if not _close(x.get(k), y.get(k)):
                out.append(f"check {i} {ident}: {k} {x.get(k)} became {y.get(k)}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    with open(argv[0]) as f, open(argv[1]) as g:
        found = differences(json.load(f), json.load(g))
    for line in found[:SHOWN]:
        print(line)
    if len(found) > SHOWN:
        print(f"... and {len(found) - SHOWN} more")
    print(f"{'differ' if found else 'same'}: {argv[0]} and {argv[1]}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
