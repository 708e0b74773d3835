"""The frameworks compute a plan's stages: one interface (`Framework`), one class per side.

Both sides take the plan and the drawn inputs and return every stage of theirs as an
`Outcome`, its value in torch's layout as numpy (`plan.Vjp`, `plan.ModuleRun`, ...), or the
error it raised. How a side gets there (for JAX: one fused program per case run, the program
cache, its compile options and memory budget) is private to it.
"""

from __future__ import annotations

from typing import Protocol

from ..inputs import Inputs
from ..plan import Outcome, Plan, Stage, attempt


class Framework(Protocol):
    """One side of the crosscheck."""

    name: str

    def compute(self, plan: Plan, inputs: Inputs, clock: dict) -> dict[Stage, Outcome]:
        """Every stage of `plan` whose side is this one, in the plan's order."""

    def case_done(self) -> None:
        """A case's runs (all its shape buckets) are over."""


def each(side, plan: Plan, inputs: Inputs, clock: dict) -> dict[Stage, Outcome]:
    """`side.value(stage, plan, inputs)` for each of `side`'s stages of `plan`, in order."""
    return {s: attempt(s.label, lambda s=s: side.value(s, plan, inputs), clock) for s in plan.stages if s.side == side.name}


def both(torch, jax) -> tuple[Framework, Framework]:
    """Both sides over their adapters (`crosscheck.adapters`)."""
    from ._jax import JaxSide
    from ._torch import TorchSide

    return TorchSide(torch), JaxSide(jax)


def compute(sides, plan: Plan, inputs: Inputs, clock: dict) -> dict[Stage, Outcome]:
    """Every stage of `plan`, from the side that runs it."""
    out = {}
    for side in sides:
        out.update(side.compute(plan, inputs, clock))
    return out
