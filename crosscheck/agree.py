"""`crosscheck.check` and `crosscheck.assert_agree`: every check of one layer, in one call.

The call builds a `Case` from the functions and shapes it is given and runs the harness's
checks on it, one dtype after another. Where one framework's function is missing, or a
reference forward is, the checks that need it do not run, and the report lists each with why
(`Report.not_run`); nothing stands in for a function that was not given. The one exception is
the float64 oracle of bfloat16 and float16: without a reference, the custom function itself in
float64 serves (its float64 run is checked against autodiff or finite differences).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .layout import IDENTITY, Layout
from .registry import Case, Tensor
from .inputs import Inputs
from .plan import Plan
from .results import Report
from .runner import CaseRun

class NotGiven(Exception):
    """Raised by a function the call was not given, were it called: the plan leaves out every
    stage that needs one (`Plan.given`), so none is."""


def _missing(what: str) -> Callable[..., Any]:
    def missing(*args, **kwargs):
        raise NotGiven(what)

    return missing


def _tensors(spec, role: str, layouts: Mapping[str, Layout]) -> tuple[Tensor, ...]:
    """Tensors from `spec`: a sequence of shapes (named `role`, or `role0`, `role1`, ...), a
    dict of name to shape, or `Tensor`s as they are; `layouts` overrides a tensor's layout."""
    items = list(spec.items()) if isinstance(spec, Mapping) else list(spec)
    if not isinstance(spec, Mapping):
        items = [(role if len(items) == 1 else f"{role}{i}", s) for i, s in enumerate(items)]
    out = []
    for name, s in items:
        if isinstance(s, Tensor):
            t = s
        elif isinstance(s, Sequence) and all(isinstance(d, int) and d >= 0 for d in s):
            t = Tensor(name, tuple(s))
        else:
            raise ValueError(f"`{role}s` (={spec!r}): {name!r} must be a shape (a tuple of sizes) or a crosscheck.Tensor")
        out.append(dataclasses.replace(t, layout=layouts[t.name]) if t.name in layouts else t)
    return tuple(out)


def make_case(torch_fn=None, jax_fn=None, *, inputs, params=(), torch_ref=None, jax_ref=None,
              layouts: Mapping[str, Layout] | None = None, out_layouts: Sequence[Layout] = (IDENTITY,),
              second_order: bool = True, name: str = "check") -> tuple[Case, frozenset]:
    """The `Case` that `check` runs, and the functions it was given (`Plan.given`)."""
    functions = {("torch", "custom"): torch_fn, ("torch", "reference"): torch_ref,
                 ("jax", "custom"): jax_fn, ("jax", "reference"): jax_ref}
    given = frozenset(k for k, fn in functions.items() if fn is not None)
    if not any(role == "custom" for _, role in given):
        raise ValueError("`torch_fn` and `jax_fn` are both None: give at least one")
    for side, fn, ref in (("torch", torch_fn, torch_ref), ("jax", jax_fn, jax_ref)):
        if ref is not None and fn is None:
            raise ValueError(f"`{side}_ref` (={ref!r}) is given without `{side}_fn`: it is the reference of that function")
    layouts = dict(layouts or {})
    case = Case(
        name=name,
        family=name,
        inputs=_tensors(inputs, "input", layouts),
        params=_tensors(params, "param", layouts),
        torch_fn=torch_fn or _missing("no torch function given"),
        torch_ref=torch_ref or _missing("no torch reference forward given (`torch_ref`)"),
        jax_fn=jax_fn or _missing("no JAX function given"),
        jax_ref=jax_ref or _missing("no JAX reference forward given (`jax_ref`)"),
        out_layouts=tuple(out_layouts),
        second_order=second_order,
    )
    unknown = set(layouts) - {t.name for t in case.tensors}
    if unknown:
        raise ValueError(f"`layouts` (={sorted(unknown)!r}) names no input or parameter; they are {[t.name for t in case.tensors]}")
    return case, given


class OneCallRun(CaseRun):
    """A `CaseRun` of a case that may lack one side or its references: its plan holds only the
    stages whose functions were given (`Plan.given`), and the checks that need a missing one
    are listed in `not_run` instead of failing."""

    def __init__(self, case: Case, dtype: str, device: str, trials: int, seed: int, torch, jax, given: frozenset):
        super().__init__(case, dtype, device, trials, seed, torch, jax)
        self.given = given
        self.repro = f"crosscheck.check(..., name={case.name!r}, dtypes=[{dtype!r}], device={device!r}, seed={seed}, trials={trials})"

    def draw(self):
        plan = Plan(self.case, self.dtype, given=self.given)
        self.inputs = Inputs.draw(self.case, self.dtype, self.seeds, self.per_seed, self.torch, self._shapes_of(*plan.oracle))

    def _shapes_of(self, side: str, role: str):
        """The outputs' shapes in torch's layout from `side`'s `role` function (the oracle's:
        one that was given) on one trial."""
        fn = getattr(self.case, f"{side}_{'ref' if role == 'reference' else 'fn'}")
        tensors = self.case.tensors
        if side == "torch":
            return lambda one: self.torch.output_shapes(fn, [self.torch.from_numpy(one[t.name], t.kind, "float64") for t in tensors])

        def from_jax(one):
            import jax

            outs = jax.eval_shape(fn, *(jax.ShapeDtypeStruct(t.layout.jax_shape(t.shape), one[t.name].dtype) for t in tensors))
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            lays = self.case.out_layouts if len(self.case.out_layouts) == len(outs) else self.case.out_layouts * len(outs)
            return [lay.from_jax(np.empty((1, *o.shape)))[0].shape for lay, o in zip(lays, outs)]

        return from_jax


def check(torch_fn: Callable | None = None, jax_fn: Callable | None = None, *, inputs, params=(),
          torch_ref: Callable | None = None, jax_ref: Callable | None = None,
          layouts: Mapping[str, Layout] | None = None, out_layouts: Sequence[Layout] = (IDENTITY,),
          dtypes: Sequence[str] | None = None, trials: int = 8, seed: int = 0, device: str = "cpu",
          second_order: bool = True, name: str = "check") -> Report:
    """Run every check that applies to a hand-written backward, in each of `dtypes`.

    Args:
        torch_fn: the custom torch function (an `autograd.Function`'s `apply`, or a function
            that calls one), taking `(*inputs, *params)` as tensors in torch's layout.
        jax_fn: the custom JAX function (calling a `jax.custom_vjp`), taking the same arrays
            in JAX's layout. Either may be None: the checks that need it are then not run.
        inputs: shapes in torch's layout: a sequence (`[(3, 1, 5)]`, names `input`, or
            `input0`, `input1`, ...), a dict of name to shape, or `crosscheck.Tensor`s (to
            draw differently, or for integer or non-differentiable inputs).
        params: the same for parameters (names `param`, `param0`, ...); they follow the inputs.
        torch_ref, jax_ref: the same math from each framework's standard ops, differentiated by
            autodiff (`grad-autodiff`, `hvp-autodiff`, `forward-reference`, and the float64
            oracle of bfloat16 and float16).
        layouts: name to `crosscheck.layout.Layout`, for a tensor whose JAX layout differs from
            torch's (`crosscheck.layout.TRANSPOSE`, `permute(...)`).
        out_layouts: the outputs' layouts, likewise.
        dtypes: of `float64`, `float32`, `bfloat16`, `float16` (default all four).
        trials: fresh random draws, checked together; `seed` fixes them.
        second_order: False where the backward is not itself differentiable by design.
        name: the layer's name in messages.

    Returns:
        The `Report` (as `crosscheck.run` returns), `not_run` listing what could not run.
    """
    from . import adapters
    from .options import check_dtypes, check_options
    from .session import versions

    case, given = make_case(torch_fn, jax_fn, inputs=inputs, params=params, torch_ref=torch_ref, jax_ref=jax_ref,
                            layouts=layouts, out_layouts=out_layouts, second_order=second_order, name=name)
    check_options(trials, 1, device)
    dtypes = check_dtypes(list(dtypes) if dtypes else None)
    results, not_run = [], {}
    with adapters.opened(device) as (torch, jax, device):
        for dtype in dtypes:
            run = OneCallRun(case, dtype, device, trials, seed, torch, jax, given)
            results += run.run()
            for line in run.not_run:
                not_run.setdefault(line, []).append(dtype)
        jax.relieve()
    report = Report(results, seed, trials, device, f"crosscheck.check(name={name!r})", versions(torch, jax))
    report.not_run = [f"{line} [{', '.join(ds)}]" for line, ds in not_run.items()]
    return report


def describe(report: Report) -> str:
    """The CLI's text for `report`: the failures, the summary, then what could not run."""
    from .report import format_failures, format_summary

    parts = [format_failures(report), format_summary(report)]
    if report.not_run:
        parts.append("not run:\n" + "\n".join(f"  {line}" for line in report.not_run))
    return "\n\n".join(p for p in parts if p)


def assert_agree(*args, **kwargs) -> Report:
    """`check(*args, **kwargs)`, raising `AssertionError` with the failures' text (as the CLI
    prints them) where any check fails; returns the report otherwise."""
    __tracebackhide__ = True
    report = check(*args, **kwargs)
    if not report.passed:
        raise AssertionError(describe(report))
    return report


__all__ = ["assert_agree", "check", "describe"]
