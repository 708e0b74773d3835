"""What a case run computes: its stages, as typed keys, made once before anything runs.

A `Stage` names one computation by the side that runs it, the operation, which of the case's
functions it takes (`role`), the dtype (None: the run's; "float64": the oracle's) and, for a
finite-difference forward, its shift along the drawn direction (in steps of `FD_STEP`). The
frameworks compute every stage of the plan (`frameworks`), the checks read them (`checks`).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import NamedTuple

from .compare import UNIT_ROUNDOFF
from .registry import LOW_PRECISION, Case

SIDES = ("torch", "jax")
ROLES = ("custom", "reference")
# Finite differences: the step, about the cube root of float64's unit roundoff (see
# `checks.finite_differences`), and the stencil's points, in steps.
FD_STEP = UNIT_ROUNDOFF["float64"] ** (1 / 3)
FD_SHIFTS = (-2, -1, 1, 2)


@dataclass(frozen=True)
class Stage:
    """One computation of a case run. `op` is one of:

    - "vjp": outputs and gradients over every trial (`Vjp`);
    - "forward": outputs only, from the plain forward (a tuple of arrays), shifted by
      `shift * FD_STEP` along the direction;
    - "module": trial 0 through the user-facing module (`ModuleRun`), None where the case has none;
    - "hvp": Hessian products along the direction (a list, None where not differentiable);
    - "contract": the raw backward called directly (a list of problems);
    - "rounding" / "rounding-hvp": the elements' rounding error scale in the run's dtype
      (`Vjp` without meta / a list like "hvp"), from the float64 rounding model.

    `label` names the stage in errors and in the clock; it is not part of its identity.
    """

    side: str
    op: str
    role: str = "custom"
    dtype: str | None = None
    shift: int = 0
    label: str = field(default="", compare=False)


class Vjp(NamedTuple):
    """In torch's layout, trial axis first: outputs, gradients in the case's tensor order
    (None where not differentiable); and each gradient's raw `(shape, dtype)` for one trial in
    the framework's own layout, beside what it should be there (`expected`)."""

    outs: tuple
    grads: list
    meta: list | None = None
    expected: list | None = None


class ModuleRun(NamedTuple):
    """Trial 0 through a module: outputs and gradients as `Vjp`'s (a trial axis of 1), and the
    problems with the raw gradients' shapes and dtypes."""

    outs: tuple
    grads: list
    problems: list


@dataclass(frozen=True)
class Plan:
    """Every stage of one case run in `dtype`, on the shape bucket labelled `shape`.

    `given`: the case's functions that exist, as `(side, role)` pairs; None (every registered
    case) for all of them. `crosscheck.check` may lack a side or a reference: the plan then
    holds only the stages whose functions exist, and the checks that read a stage it lacks
    are not run (`Stages`)."""

    case: Case
    dtype: str
    shape: str = ""
    given: frozenset | None = None

    def has(self, side: str, role: str = "custom") -> bool:
        return self.given is None or (side, role) in self.given

    @property
    def sides(self) -> tuple[str, ...]:
        """The sides whose custom function exists."""
        return tuple(s for s in SIDES if self.has(s))

    def roles(self, side: str) -> list[str]:
        """`side`'s functions that exist, the reference first (the rounding model's order)."""
        return [r for r in reversed(ROLES) if self.has(side, r)]

    @property
    def oracle(self) -> tuple[str, str]:
        """Whose function, in float64, is the oracle of low precision: JAX's reference, else
        torch's, else (one side without a reference) the custom function itself."""
        return next(((s, "reference") for s in reversed(SIDES) if self.has(s, "reference")), (self.sides[-1], "custom"))

    @property
    def low(self) -> bool:
        return self.dtype in LOW_PRECISION

    @property
    def finite_differences(self) -> bool:
        return self.dtype == "float64"

    @property
    def second_order(self) -> bool:
        return self.case.second_order and not self.low

    # -- the keys ------------------------------------------------------------------------
    def vjp(self, side: str) -> Stage:
        return Stage(side, "vjp", label=f"{side} custom vjp")

    def forward(self, side: str, shift: int = 0) -> Stage:
        return Stage(side, "forward", shift=shift, label=f"{side} finite differences" if shift else f"{side} custom forward")

    def module(self, side: str) -> Stage:
        return Stage(side, "module", "module", label=f"{side} module")

    def reference(self, side: str) -> Stage:
        """`side`'s reference VJP; in low precision, for both sides, the float64 oracle (JAX's
        reference in float64 on the same rounded inputs)."""
        if self.low:
            by, role = self.oracle
            return Stage(by, "vjp", role, "float64", label=f"float64 oracle ({by} {role})")
        return Stage(side, "vjp", "reference", label=f"{side} reference vjp")

    def rounding(self, hvp: bool = False) -> Stage:
        """From JAX's functions where its custom one exists, else from torch's own ops."""
        by = "jax" if self.has("jax") else "torch"
        if hvp:
            return Stage(by, "rounding-hvp", label="rounding model of hvp (float64)")
        return Stage(by, "rounding", label="rounding model (float64)")

    def missing(self, stage: Stage) -> str | None:
        """Why `stage` cannot run (the function it needs was not given), or None."""
        if stage.op == "module":  # a case's modules are its own, and None where it has none
            return None
        side, role = stage.side, "custom" if stage.op.startswith("rounding") else stage.role
        if self.has(side, role):
            return None
        name = {"torch": "torch", "jax": "JAX"}[side]
        return f"no {name} reference forward given (`{side}_ref`)" if role == "reference" else f"no {name} function given"

    def contract(self, side: str) -> Stage:
        return Stage(side, "contract", label={"torch": "torch raw backward", "jax": "jax custom_vjp fwd/bwd"}[side])

    def hvp(self, side: str, role: str = "custom") -> Stage:
        how = {"torch": "double backward", "jax": "jvp of grad"}[side]
        return Stage(side, "hvp", role, label=f"{side} {role} {how}")

    # -- the run order -------------------------------------------------------------------
    @property
    def stages(self) -> list[Stage]:
        """Every stage, in the order they run (each side keeps this order among its own)."""
        out = [*map(self.vjp, SIDES), *map(self.forward, SIDES), *map(self.module, SIDES), self.rounding()]
        out += list(dict.fromkeys(map(self.reference, SIDES)))  # the oracle once
        out += map(self.contract, SIDES)
        if self.finite_differences:
            out += [self.forward(side, m) for side in SIDES for m in FD_SHIFTS]
        if self.second_order:
            out += [self.hvp(side, role) for role in ("custom", "reference") for side in SIDES]
            out.append(self.rounding(hvp=True))
        return [s for s in out if self.missing(s) is None]


class Absent(str):
    """A stage's error saying that the function it needs was not given: the checks that read
    it are not run (and listed so), not failed."""


class Stages(dict):
    """The computed stages, `{Stage: Outcome}`; a stage the plan left out reads as `Absent`."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan

    def __missing__(self, stage: Stage) -> "Outcome":
        return Outcome(error=Absent(self.plan.missing(stage) or f"{stage.label} was not planned"))


@dataclass
class Outcome:
    value: object = None
    error: str | None = None


def attempt(label: str, thunk, clock: dict | None = None) -> Outcome:
    """`thunk()` as an Outcome: a broken layer is a failed check, never a crash. Its seconds
    add to `clock[label]`."""
    start = time.perf_counter()
    try:
        return Outcome(thunk())
    except Exception as exc:  # a broken layer is a failed check, never a crash
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"
        return Outcome(error=f"{label} raised {type(exc).__name__}: {exc}{where}")
    finally:
        if clock is not None:
            clock[label] = clock.get(label, 0.0) + time.perf_counter() - start
