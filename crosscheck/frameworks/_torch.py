"""The torch side: each stage eagerly, all trials at once through `torch.func.vmap`."""

from __future__ import annotations

import numpy as np

from ..compare import UNIT_ROUNDOFF
from ..inputs import Inputs
from ..plan import FD_STEP, ModuleRun, Plan, Stage, Vjp
from . import each, larger_rounding

# The raw backward called with a subset of `needs_input_grad` must give the gradients it gives
# with all of them: the same code on the same values, off by no more than a reordering of its
# sums. Allowed: this many unit roundoffs, relative to the gradient's root-mean-square.
CONTRACT_ROUNDING = 64


class TorchSide:
    name = "torch"

    def __init__(self, adapter):
        self.adapter = adapter

    def compute(self, plan: Plan, inputs: Inputs, clock: dict) -> dict:
        return each(self, plan, inputs, clock)

    def case_done(self) -> None:
        pass

    def value(self, stage: Stage, plan: Plan, inputs: Inputs):
        case, a = plan.case, self.adapter
        fn = case.torch_ref if stage.role == "reference" else case.torch_fn
        diff = [t.differentiable for t in case.tensors]
        if stage.op == "forward":
            view = inputs.for_torch(a, shift=stage.shift * FD_STEP if stage.shift else None)
            return a.forward(fn, view.args)
        if stage.op == "module":
            return self._module(plan, inputs)
        if stage.op == "contract":
            return self._contract(plan, inputs)
        if stage.op in ("rounding", "rounding-hvp"):
            return self._rounding(plan, inputs, stage.op == "rounding-hvp")
        view = inputs.for_torch(a, dtype=stage.dtype)
        if stage.op == "hvp":
            return a.hvp(fn, view.args, diff, view.cts, view.directions)
        expected = [(tuple(t.shape), stage.dtype or plan.dtype) for t in case.tensors]
        return Vjp(*a.vjp(fn, view.args, diff, view.cts), expected)

    def _module(self, plan: Plan, inputs: Inputs) -> ModuleRun | None:
        """Trial 0 through the `nn.Module` and `loss.backward()`; grads in the tensors' order."""
        case, dtype = plan.case, plan.dtype
        if case.torch_module is None:
            return None
        n_in = len(case.inputs)
        view = inputs.for_torch(self.adapter, trial=0)
        args = view.args
        in_diff = [t.differentiable for t in case.inputs]
        keywords = [t.name if t.keyword else None for t in case.inputs]
        module = case.torch_module(self.adapter.torch_dtype(dtype), self.adapter.device)
        state = {t.name: a for t, a in zip(case.params, args[n_in:])}
        outs, grads, meta = self.adapter.module_grads(module, args[:n_in], in_diff, state, view.cts, keywords)
        ordered = [grads.get(i) for i in range(n_in)] + [grads.get(t.name) for t in case.params]
        problems = []
        for t, m in zip(case.tensors, [meta.get(i) for i in range(n_in)] + [meta.get(t.name) for t in case.params]):
            want = (tuple(t.shape), dtype)
            if t.differentiable and (m is None or m != want):
                problems.append(f"grad of {t.name}: {'missing' if m is None else f'{m[0]} {m[1]}'}, expected {want[0]} {want[1]}")
        return ModuleRun(outs, ordered, problems)

    def _contract(self, plan: Plan, inputs: Inputs) -> list[str]:
        """Each `autograd.Function` the custom forward applies, its `backward` called directly
        on trial 0 (`backward_contract`)."""
        from ..adapters.torch_adapter import backward_contract, record_functions

        args = inputs.for_torch(self.adapter, trial=0).args
        for a, t in zip(args, plan.case.tensors):
            if t.differentiable:
                a.requires_grad_(True)
        calls = record_functions(plan.case.torch_fn, args)
        if not calls:
            return ["no autograd.Function was applied by the custom forward"]
        rng = np.random.default_rng([inputs.seeds[0], 1])
        tol = CONTRACT_ROUNDING * UNIT_ROUNDOFF[plan.dtype]
        return [p for cls, a in calls for p in backward_contract(cls, a, rng, tol, tol)]

    def _rounding(self, plan: Plan, inputs: Inputs, hvp: bool):
        """The rounding model where no JAX function is given: the same measure from torch's own
        ops (`adapters.torch_rounding`), of the reference where one is given and of the custom
        function, the larger per element (`larger_rounding`)."""
        from ..adapters.torch_rounding import spread
        from ..compare import SPREAD_DRAWS, rounding_units

        case, a = plan.case, self.adapter
        diff = [t.differentiable for t in case.tensors]
        view = inputs.for_torch(a, dtype="float64")
        units, n = rounding_units(plan.dtype), len(inputs.out_shapes)

        def model(fn):
            if hvp:
                return spread(lambda: a.hvp(fn, view.args, diff, view.cts, view.directions), units, SPREAD_DRAWS)

            def vjp():
                outs, grads, _ = a.vjp(fn, view.args, diff, view.cts)
                return [*outs, *grads]

            flat = spread(vjp, units, SPREAD_DRAWS)
            return Vjp(tuple(flat[:n]), flat[n:])

        fns = [case.torch_ref if role == "reference" else case.torch_fn for role in plan.roles("torch")]
        return larger_rounding(fns, model, hvp)
