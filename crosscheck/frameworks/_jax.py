"""The JAX side: a case run's programs fused into one compiled program where they can be.

Every stage but the rounding model and the contract runs in one `jit` (`JaxAdapter.run_together`);
a stage whose request cannot be made, or every stage where the fused program fails, runs its
own program and reports its own error, as if nothing had been fused. Programs are named for the
program cache by the case, its shape bucket and which of the case's functions runs.
"""

from __future__ import annotations

import dataclasses

from ..adapters import jax_requests
from ..compare import SPREAD_DRAWS, rounding_units
from ..inputs import Inputs
from ..plan import FD_SHIFTS, FD_STEP, ModuleRun, Plan, Stage, Vjp
from ..plan import attempt
from . import each, larger_rounding


def _then(request, post):
    """`request` (a `jax_requests.Request`) finishing with `post` applied to its result."""
    finish = request.finish
    return dataclasses.replace(request, finish=lambda raw: post(finish(raw)))


def _name(plan: Plan, fn) -> str | None:
    """The program's name for the program cache: the case, its shape bucket and which of the
    case's functions runs (the first role that `fn` plays)."""
    case = plan.case
    roles = {"custom": case.jax_fn, "reference": case.jax_ref, "module": case.jax_module}
    role = next((r for r, f in roles.items() if f is fn), None)
    return None if role is None else f"{case.name} [{plan.shape}] {role}"


def _fused_stages(plan: Plan) -> list[Stage]:
    """The JAX stages of the plan that run in the case run's one program, in the program's order."""
    keys = [plan.vjp("jax"), plan.forward("jax"), plan.reference("jax")]
    if plan.case.jax_module is not None:
        keys.append(plan.module("jax"))
    if plan.finite_differences:
        keys += [plan.forward("jax", m) for m in FD_SHIFTS]
    if plan.second_order:
        keys += [plan.hvp("jax"), plan.hvp("jax", "reference")]
    planned = set(plan.stages)
    return [k for k in keys if k.side == "jax" and k in planned]


class JaxSide:
    name = "jax"

    def __init__(self, adapter):
        self.adapter = adapter
        self.fused: dict = {}

    def compute(self, plan: Plan, inputs: Inputs, clock: dict) -> dict:
        self.adapter.new_case()
        self.fused = attempt("jax programs, fused", lambda: self._fuse(plan, inputs), clock).value or {}
        return each(self, plan, inputs, clock)

    def case_done(self) -> None:
        self.adapter.relieve()

    def value(self, stage: Stage, plan: Plan, inputs: Inputs):
        if stage.op == "contract":
            return self._contract(plan, inputs)
        if stage.op in ("rounding", "rounding-hvp"):
            return self._rounding_both(plan, inputs, stage.op == "rounding-hvp")
        if stage.op == "module" and plan.case.jax_module is None:
            return None
        if stage in self.fused:
            return self.fused[stage]
        return self.adapter.run(self._request(stage, plan, inputs))

    def _fuse(self, plan: Plan, inputs: Inputs) -> dict:
        """`{stage: value}` for every fused stage whose request can be made; {} where the
        fused program fails."""
        requests = {}
        for stage in _fused_stages(plan):
            try:
                requests[stage] = self._request(stage, plan, inputs)
            except Exception:  # its stage makes it again, and reports the error
                continue
        try:
            return dict(zip(requests, self.adapter.run_together(list(requests.values()))))
        except Exception:
            return {}

    def _request(self, stage: Stage, plan: Plan, inputs: Inputs):
        """The stage's program, not yet run, finishing in torch's layout."""
        case, a = plan.case, self.adapter
        if stage.op == "module":
            return self._module_request(plan, inputs)
        fn = case.jax_ref if stage.role == "reference" else case.jax_fn
        diff = [t.differentiable for t in case.tensors]
        back = lambda outs: tuple(lay.from_jax(o) for lay, o in zip(inputs.out_layouts(len(outs)), outs))  # noqa: E731
        grads_back = lambda gs: [None if g is None else t.layout.from_jax(g) for t, g in zip(case.tensors, gs)]  # noqa: E731
        if stage.op == "forward":
            view = inputs.for_jax(a, shift=stage.shift * FD_STEP if stage.shift else None)
            return _then(jax_requests.forward(a, fn, view.args, name=_name(plan, fn)), back)
        view = inputs.for_jax(a, dtype=stage.dtype)
        if stage.op == "hvp":
            request = jax_requests.hvp(a, fn, view.args, diff, view.cts, view.directions, name=_name(plan, fn))
            return _then(request, grads_back)
        request = jax_requests.vjp(a, fn, view.args, diff, view.cts, name=_name(plan, fn))
        expected = [(tuple(t.layout.jax_shape(t.shape)), stage.dtype or plan.dtype) for t in case.tensors]
        return _then(request, lambda v: Vjp(back(v[0]), grads_back(v[1]), v[2], expected))

    def _module_request(self, plan: Plan, inputs: Inputs):
        """Trial 0 through the `nnx.Module` and `nnx.grad`, finishing as a `ModuleRun`."""
        case, a = plan.case, self.adapter
        n_in = len(case.inputs)
        view = inputs.for_jax(a, trial=0)
        in_diff = [t.differentiable for t in case.inputs]
        keywords = [t.name if t.keyword else None for t in case.inputs]
        pmap = case.module_param_map()
        torch_layout = {t.name: inputs.data[t.name][0] for t in case.params}
        # In the run's dtype, as the torch module holds them: Flax keeps batch stats in
        # float32 whatever the module's dtype, which would round float64 running statistics.
        module = jax_requests.build_module(a, case.jax_module, plan.dtype, pmap.to_nnx(torch_layout))
        request = jax_requests.module(
            a, module, view.args[:n_in], in_diff, view.cts, keywords,
            key=(case.jax_module, plan.dtype), name=_name(plan, case.jax_module), via=case.jax_call,
        )

        def to_torch_layout(value):
            outs, in_grads, p_grads, meta, expected = value
            outs = tuple(lay.from_jax(o[None]) for lay, o in zip(inputs.out_layouts(len(outs)), outs))
            p_torch = (pmap.grads_to_torch or pmap.to_torch)(p_grads)
            ordered = [None if i not in in_grads else t.layout.from_jax(in_grads[i][None]) for i, t in enumerate(case.inputs)]
            ordered += [None if t.name not in p_torch else p_torch[t.name][None] for t in case.params]
            problems = [
                f"grad of {k if isinstance(k, str) else case.inputs[k].name}: {meta[k][0]} {meta[k][1]}, "
                f"expected {expected[k][0]} {expected[k][1]}"
                for k in expected
                if meta.get(k) != expected[k]
            ]
            problems += [f"grad of {t.name}: missing" for t in case.params if t.differentiable and t.name not in p_torch]
            return ModuleRun(outs, ordered, problems)

        return _then(request, to_torch_layout)

    def _contract(self, plan: Plan, inputs: Inputs) -> list[str]:
        """Each `custom_vjp` the custom forward calls, its fwd and bwd called directly on trial 0
        (`jax_contract.bwd_contract`), kept by the program cache."""
        from ..adapters.jax_contract import bwd_contract, record_custom_vjps

        fn = plan.case.jax_fn

        def verdict(args):
            calls = record_custom_vjps(fn, args)
            if not calls:
                return ["no jax.custom_vjp was called by the custom forward"]
            return [p for f, a, kw in calls for p in bwd_contract(f, a, kw)]

        args = tuple(inputs.for_jax(self.adapter, trial=0).args)
        name = _name(plan, fn)
        return self.adapter.remember(name and f"{name} contract", fn, args, lambda: verdict(args))

    def _rounding(self, plan: Plan, inputs: Inputs, fn, hvp: bool):
        """How far rounding in the dtype under test may move each element of `fn`'s outputs
        and gradients (or, with `hvp`, of its Hessian products): measured in float64 on the
        rounded inputs, held in torch's layout. Its program takes the unit roundoffs as
        arguments and is not fused with the dtype's others, so one compiled program serves
        every dtype of a shape bucket."""
        case, a = plan.case, self.adapter
        diff = [t.differentiable for t in case.tensors]
        view = inputs.for_jax(a, dtype="float64")
        more = dict(units=rounding_units(plan.dtype), draws=SPREAD_DRAWS, name=_name(plan, fn))
        grads_back = lambda gs: [None if g is None else t.layout.from_jax(g) for t, g in zip(case.tensors, gs)]  # noqa: E731
        if hvp:
            return _then(jax_requests.rounding(a, fn, view.args, diff, view.cts, vs=view.directions, **more),
                         grads_back)
        back = lambda outs: tuple(lay.from_jax(o) for lay, o in zip(inputs.out_layouts(len(outs)), outs))  # noqa: E731
        request = jax_requests.rounding(a, fn, view.args, diff, view.cts, **more)
        return _then(request, lambda v: Vjp(back(v[0]), grads_back(v[1])))

    def _rounding_both(self, plan: Plan, inputs: Inputs, hvp: bool = False):
        """The rounding models of the JAX reference and custom function that exist, the
        larger per element (`larger_rounding`)."""
        fns = [plan.case.jax_ref if role == "reference" else plan.case.jax_fn for role in plan.roles("jax")]
        return larger_rounding(fns, lambda fn: self.adapter.run_on_host(self._rounding(plan, inputs, fn, hvp)), hvp)
