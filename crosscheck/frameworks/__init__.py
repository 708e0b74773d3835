"""The frameworks compute a plan's stages: one interface (`Framework`), one class per side.

Both sides take the plan and the drawn inputs and return every stage of theirs as an
`Outcome`, its value in torch's layout as numpy (`plan.Vjp`, `plan.ModuleRun`, ...), or the
error it raised. How a side gets there (for JAX: one fused program per case run, the program
cache, its compile options and memory budget) is private to it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..inputs import Inputs
from ..plan import Outcome, Plan, Stage, Stages, Vjp, attempt


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


def compute(sides, plan: Plan, inputs: Inputs, clock: dict) -> Stages:
    """Every stage of `plan`, from the side that runs it."""
    out = Stages(plan)
    for side in sides:
        out.update(side.compute(plan, inputs, clock))
    return out


def larger_rounding(fns: list, model, hvp: bool):
    """The larger, per element, of the rounding models `model(fn)` of `fns` (the reference,
    then the custom function): the two compute in their own ways, and an error that one way's
    cancellation makes (`1 + erf(x)` for gelu at x = -3.5, where the reference computes
    `erfc`) is the other way's too, if it computes as the custom port does. Where one of them
    raises, the other's model serves alone (the broken one fails its own checks); where the
    last raises with no model made, its error is the stage's."""
    models = []
    for k, fn in enumerate(fns):
        try:
            models.append(model(fn))
        except Exception:  # a broken function fails its own checks; the other's model serves
            if k == len(fns) - 1 and not models:
                raise
    if len(models) == 1:
        return models[0]
    ref, custom = models
    larger = lambda a, b: b if a is None else a if b is None else np.maximum(a, b)  # noqa: E731
    if hvp:
        return [larger(a, b) for a, b in zip(ref, custom)]
    return Vjp(tuple(map(larger, ref.outs, custom.outs)), [larger(a, b) for a, b in zip(ref.grads, custom.grads)])
