"""The result model: what each check found, and the report of a whole run.

A check's identity is a structure (`CheckId`), rendered in one place for every reader: the
failure message's head, the JSON report's fields, JUnit's suite and test names, and the
summary's grouping. The JSON report is written and read here only.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class CheckId:
    """Which check: of `case` in `dtype` on `device`, the check `check` (e.g. "grad") of
    `tensor` ("grad of weight", or "-" for a stage's error), comparing `compared` ("torch vs
    jax", "float64 oracle vs torch, modules"), on the shape bucket `shape` ("" for the shapes
    the case declares)."""

    case: str
    dtype: str
    device: str
    check: str
    tensor: str
    compared: str
    shape: str = ""

    @property
    def group(self) -> tuple[str, str, str]:
        """`(case, dtype, device)`: one row of the summary, one JUnit suite."""
        return self.case, self.dtype, self.device

    def head(self, passed: bool) -> str:
        """The first line of a message: `FAILED linear / float32 / cpu / grad / grad of x (torch vs jax)`."""
        return f"{'passed' if passed else 'FAILED'} {' / '.join((*self.group, self.check, self.tensor))} ({self.compared})"

    def test_name(self) -> str:
        """The check within its group (JUnit's test case name)."""
        return f"{self.check} / {self.tensor} ({self.compared})" + (f" [{self.shape}]" if self.shape else "")

    def fields(self) -> dict:
        """The id's fields as the JSON report names them (`layer` for the case)."""
        d = asdict(self)
        return {"layer": d.pop("case"), **d}


def pair(expected: str, actual: str, note: str = "") -> str:
    """The `compared` label of a comparison of `expected` with `actual` ("torch vs jax")."""
    return f"{expected} vs {actual}" + (f", {note}" if note else "")


@dataclass(kw_only=True)
class CheckResult:
    """One check's verdict: its `id`, whether it `passed`, the comparison's numbers (None for
    a check that compares no arrays: a stage's error, a list of problems) and the `message`
    ("" when passed)."""

    id: CheckId
    passed: bool
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    atol: float | None = None
    rtol: float | None = None
    ratio: float | None = None
    message: str = ""

    layer = property(lambda self: self.id.case)
    dtype = property(lambda self: self.id.dtype)
    device = property(lambda self: self.id.device)
    check = property(lambda self: self.id.check)
    tensor = property(lambda self: self.id.tensor)
    compared = property(lambda self: self.id.compared)
    shape = property(lambda self: self.id.shape)

    def to_dict(self) -> dict:
        """The JSON report's record: the id's fields and the verdict's, flat."""
        ident = self.id.fields()
        shape = ident.pop("shape")
        verdict = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "id"}
        return {**ident, **verdict, "shape": shape}

    @classmethod
    def from_dict(cls, d: dict) -> "CheckResult":
        ident = CheckId(**{f.name: d.get("layer" if f.name == "case" else f.name, "") for f in fields(CheckId)})
        numbers = {f.name: _number(d.get(f.name)) for f in fields(cls) if f.name not in ("id", "passed", "message")}
        return cls(id=ident, passed=d["passed"], message=d.get("message", ""), **numbers)


def worst_ratio(results: list[CheckResult]) -> float:
    ratios = [r.ratio for r in results if r.ratio is not None and not math.isnan(r.ratio)]
    return max(ratios, default=0.0)


@dataclass
class Report:
    results: list[CheckResult]
    seed: int | str  # "A:B" for a soak over seeds A..B-1
    trials: int
    device: str
    command: str
    versions: dict = field(default_factory=dict)
    shapes: int = 1
    # Checks that could not run, each with why (`crosscheck.check` without one side or a reference).
    not_run: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def groups(self) -> dict[tuple, list[CheckResult]]:
        """The results by `CheckId.group`, in run order."""
        out: dict[tuple, list[CheckResult]] = {}
        for r in self.results:
            out.setdefault(r.id.group, []).append(r)
        return out

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "seed": self.seed,
            "trials": self.trials,
            "shapes": self.shapes,
            "device": self.device,
            "command": self.command,
            "versions": self.versions,
            "checks": [r.to_dict() for r in self.results],
            "not_run": self.not_run,
        }

    def write_json(self, path: str) -> None:
        """Strict JSON: non-finite numbers (a relative error against an exact 0 is inf) are
        written as the strings "inf", "-inf" and "nan"."""
        with open(path, "w") as f:
            json.dump(_finite(self.to_dict()), f, indent=1, allow_nan=False)
            f.write("\n")


def read_json(path: str) -> dict:
    """A report written by `Report.write_json`: its fields, with `checks` as `CheckResult`s."""
    with open(path) as f:
        data = json.load(f)
    data["checks"] = [CheckResult.from_dict(c) for c in data["checks"]]
    return data


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _number(x):
    return float(x) if isinstance(x, str) else x  # "inf", "-inf" and "nan" as `_finite` writes them
