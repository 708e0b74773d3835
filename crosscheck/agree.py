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
from .runner import CaseRun, Outcome
from .session import Report

SIDES = ("torch", "jax")


class NotGiven(Exception):
    """Raised by a function the call was not given, when a check calls it."""


class Absent(str):
    """A stage's error that says a function was not given: its checks are not run, not failed."""


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
              second_order: bool = True, name: str = "check") -> tuple[Case, tuple[str, ...]]:
    """The `Case` that `check` runs, and the sides it was given."""
    sides = tuple(s for s, fn in zip(SIDES, (torch_fn, jax_fn)) if fn is not None)
    if not sides:
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
    return case, sides


class OneCallRun(CaseRun):
    """A `CaseRun` of a case that may lack one side or its references: the checks that need a
    missing function are listed in `not_run` instead of failing."""

    def __init__(self, case: Case, dtype: str, device: str, trials: int, seed: int, torch, jax,
                 sides: tuple[str, ...], given: dict):
        super().__init__(case, dtype, device, trials, seed, torch, jax)
        self.sides, self.given = sides, given
        self.not_run: list[str] = []
        self.repro = f"crosscheck.check(..., name={case.name!r}, dtypes=[{dtype!r}], device={device!r}, seed={seed}, trials={trials})"
        # The float64 oracle of low precision: a given reference (JAX's first, as for two
        # sides), else a given custom function.
        refs = [(s, getattr(case, f"{s}_ref")) for s in ("jax", "torch") if given[f"{s}_ref"]]
        self.oracle = refs[0] if refs else (sides[-1], getattr(case, f"{sides[-1]}_fn"))

    def _stage(self, label, thunk) -> Outcome:
        absent = []

        def guarded():
            try:
                return thunk()
            except NotGiven as e:
                absent.append(str(e))
                raise

        out = super()._stage(label, guarded)
        return Outcome(error=Absent(absent[0])) if absent else out

    def error(self, check, tensor, compared, *errors):
        absent = next((e for e in errors if isinstance(e, Absent)), None)
        if absent is None:
            super().error(check, tensor, compared, *errors)
        elif f"{check} ({compared}): {absent}" not in self.not_run:
            self.not_run.append(f"{check} ({compared}): {absent}")

    def _output_shapes(self, data):
        side, fn = self.oracle
        if side == "torch":
            one = [self.torch.from_numpy(data[t.name][0], t.kind, "float64") for t in self.case.tensors]
            return self.torch.output_shapes(fn, one)
        import jax

        one = [jax.ShapeDtypeStruct(t.layout.jax_shape(t.shape), data[t.name].dtype) for t in self.case.tensors]
        outs = jax.eval_shape(fn, *one)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        lays = self._out_layouts(len(outs))
        return [lay.from_jax(np.empty((1, *o.shape)))[0].shape for lay, o in zip(lays, outs)]

    def _vjp(self, side, fn, dtype=None):
        if self.low and dtype == "float64" and fn is self.case.jax_ref:  # the parent's oracle
            side, fn = self.oracle
        return super()._vjp(side, fn, dtype)

    def _fuse(self) -> dict:
        return super()._fuse() if "jax" in self.sides else {}

    def _rounding_both(self, hvp: bool = False):
        if "jax" in self.sides:
            return super()._rounding_both(hvp)
        # torch alone: the same model from its own ops (adapters/torch_rounding.py), of the
        # reference where one is given and of the custom function, the larger per element.
        fns = [self.case.torch_fn] + ([self.case.torch_ref] if self.given["torch_ref"] else [])
        models = [self._torch_rounding(fn, hvp) for fn in fns]
        if len(models) == 1:
            return models[0]
        larger = lambda a, b: None if a is None else np.maximum(a, b)  # noqa: E731
        if hvp:
            return [larger(a, b) for a, b in zip(*models)]
        (o1, g1), (o2, g2) = models
        return tuple(map(larger, o1, o2)), [larger(a, b) for a, b in zip(g1, g2)]

    def _torch_rounding(self, fn, hvp: bool):
        from .adapters.torch_rounding import spread
        from .compare import SPREAD_DRAWS, rounding_units

        diff = [t.differentiable for t in self.case.tensors]
        args, cts = self._args("torch", "float64"), self._cts("torch", "float64")
        units = rounding_units(self.dtype)
        if hvp:
            vs = [self.torch.from_numpy(self.direction[t.name], "float", "float64") for t in self.case.tensors if t.differentiable]
            return spread(lambda: self.torch.hvp(fn, args, diff, cts, vs), units, SPREAD_DRAWS)
        def vjp():
            outs, grads, _ = self.torch.vjp(fn, args, diff, cts)
            return [*outs, *grads]

        flat = spread(vjp, units, SPREAD_DRAWS)
        return tuple(flat[:len(self.cts)]), flat[len(self.cts):]

    def check_forward(self, st):
        super().check_forward(st)
        if self.low and len(self.sides) == 1:
            self._check_oracle(st, self.sides[0])

    def _check_oracle(self, st, side):
        """One side in low precision: its forward values and gradients vs the float64 oracle
        (`_pair` does this for two sides, beside their comparison with each other)."""
        from .compare import allowance

        oracle, rnd, compared = st["torch ref"], st["rounding"], f"float64 oracle vs {side}"
        for check, got, k in (("forward", st[f"{side} plain"], 0), ("grad", st[side], 1)):
            if got.error or oracle.error or rnd.error:
                self.error(check, "-", compared, got.error, oracle.error, rnd.error)
                continue
            values = got.value if k == 0 else got.value[1]
            for i, value in enumerate(values):
                if value is None or (k == 1 and not self.case.tensors[i].differentiable):
                    continue
                label = self._out_label(i, len(values)) if k == 0 else f"grad of {self.case.tensors[i].name}"
                self.values(check, label, compared, oracle.value[k][i], value, allowance(rnd.value[k][i], 1))


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
    from .precision import full_precision
    from .session import _adapters, check_dtypes, check_options, resolve_device, versions

    case, sides = make_case(torch_fn, jax_fn, inputs=inputs, params=params, torch_ref=torch_ref, jax_ref=jax_ref,
                            layouts=layouts, out_layouts=out_layouts, second_order=second_order, name=name)
    given = {"torch_ref": torch_ref is not None, "jax_ref": jax_ref is not None}
    check_options(trials, 1, device)
    dtypes = check_dtypes(list(dtypes) if dtypes else None)
    torch, jax = _adapters()
    device = resolve_device(device, torch, jax)
    torch.set_device(device)
    jax.set_device(device)
    jax.use_programs(False)
    results, not_run = [], {}
    with full_precision():
        for dtype in dtypes:
            run = OneCallRun(case, dtype, device, trials, seed, torch, jax, sides, given)
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
