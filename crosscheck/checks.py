"""The checks: pure functions from a plan's computed stages to findings.

Each check reads the stages it needs (`Outcome`s, keyed by the plan's `Stage`s, values in
torch's layout) and returns `Finding`s; it runs nothing, and does not know how a stage was
computed. A stage that failed turns the findings that need it into failures carrying its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compare import UNIT_ROUNDOFF, Comparison, allowance, compare
from .plan import FD_SHIFTS, FD_STEP, SIDES, Absent, Outcome, Plan, attempt
from .results import pair


@dataclass
class Finding:
    """What one check found, before it becomes a `results.CheckResult` (`runner.CaseRun.record`)."""

    check: str
    tensor: str
    compared: str
    passed: bool
    comparison: Comparison | None = None
    lines: list[str] = field(default_factory=list)
    # Why the check could not run (a function it needs was not given: `plan.Absent`), or None.
    absent: str | None = None


def values(check, tensor, sides: tuple[str, str], expected, actual, allowed, *, note="", hints=()) -> Finding:
    """`expected` (named `sides[0]`) against `actual` (`sides[1]`), compared as "<expected> vs
    <actual>[, <note>]"; `hints` go before the comparison's lines when it fails. `allowed`: per
    element (`compare.allowance`), or a `Tolerance`."""
    cmp = compare(expected, actual, allowed, names=sides)
    return Finding(check, tensor, pair(*sides, note), cmp.passed, cmp, [*hints, *cmp.lines] if cmp.lines else [])


def error(check, tensor, compared, *errors: str | None) -> Finding:
    """A check that a stage's error stopped; not run where a stage it needs was not given."""
    absent = next((e for e in errors if isinstance(e, Absent)), None)
    return Finding(check, tensor, compared, False, None, [e for e in errors if e], absent)


def verdict(check, tensor, compared, problems: list[str]) -> Finding:
    return Finding(check, tensor, compared, not problems, None, list(problems))


def out_label(i: int, n: int) -> str:
    """The name of output `i` of `n`."""
    return "output" if n == 1 else f"output {i}"


def paired(plan: Plan, check, label, t_val, j_val, o_val, err, note="") -> list[Finding]:
    """torch vs jax in float64/float32; each vs the float64 oracle (and the gap) in low
    precision. `err` is the elements' rounding error scale (`compare.rounding_error`)."""
    if not plan.low:
        return [values(check, label, ("torch", "jax"), t_val, j_val, allowance(err, 2), note=note)]
    return [
        values(check, label, ("float64 oracle", "torch"), o_val, t_val, allowance(err, 1), note=note),
        values(check, label, ("float64 oracle", "jax"), o_val, j_val, allowance(err, 1), note=note),
        values(check, label, ("torch", "jax"), t_val, j_val, allowance(err, 2), note=note),
    ]


def forward(plan: Plan, st) -> list[Finding]:
    """Forward values come from plain forward runs, so a broken backward never fails them."""
    out = []
    t, j = st[plan.forward("torch")], st[plan.forward("jax")]
    vjp_j, tm, jm = st[plan.vjp("jax")], st[plan.module("torch")], st[plan.module("jax")]
    oracle, rnd = st[plan.reference("torch")], st[plan.rounding()]
    needed = oracle if plan.low else Outcome()  # in float64 and float32 the two sides meet alone
    if t.error or j.error or needed.error or rnd.error:
        out.append(error("forward", "-", "torch vs jax", t.error, j.error, needed.error, rnd.error))
    else:
        n = len(t.value)
        if len(j.value) != n:
            out.append(error("forward", "-", "torch vs jax", f"torch returns {n} outputs, jax {len(j.value)}"))
        for i in range(min(n, len(j.value))):
            o = oracle.value.outs[i] if plan.low else None
            out += paired(plan, "forward", out_label(i, n), t.value[i], j.value[i], o, rnd.value.outs[i])
    if tm.error or jm.error or (tm.value is not None and jm.value is not None):
        if tm.error or jm.error or oracle.error or rnd.error:
            out.append(error("forward", "-", "torch module vs jax module", tm.error, jm.error, oracle.error, rnd.error))
        else:
            for i, (a, b) in enumerate(zip(tm.value.outs, jm.value.outs)):
                o, e = oracle.value.outs[i][:1], rnd.value.outs[i][:1]
                out += paired(plan, "forward", out_label(i, len(tm.value.outs)), a, b, o, e, "modules")
    if vjp_j.error or j.error or rnd.error:
        out.append(error("forward-fwd-rule", "-", "jax f vs fwd primal", vjp_j.error, j.error, rnd.error))
    else:
        for i, (a, b) in enumerate(zip(j.value, vjp_j.value.outs)):
            allowed = allowance(rnd.value.outs[i], 2)
            out.append(values("forward-fwd-rule", out_label(i, len(j.value)), ("jax f", "fwd primal"), a, b, allowed))
    if plan.low:
        return out

    def outputs(ref, cust, rnd):
        return [(out_label(i, len(ref.outs)), a, b, rnd.outs[i]) for i, (a, b) in enumerate(zip(ref.outs, cust))]

    return out + against_reference(plan, st, "forward-reference", plan.forward, "reference", outputs)


def against_reference(plan: Plan, st, check, custom, name, elements) -> list[Finding]:
    """Each side's `custom(side)` stage against its own reference's VJP (`name` in labels):
    `elements(ref, cust, rounding)` lists `(label, expected, actual, rounding error)`."""
    out, rnd = [], st[plan.rounding()]
    for side in SIDES:
        cust, ref = st[custom(side)], st[plan.reference(side)]
        if cust.error or ref.error or rnd.error:
            out.append(error(check, "-", f"{side} custom vs {name}", cust.error, ref.error, rnd.error))
            continue
        for label, a, b, err in elements(ref.value, cust.value, rnd.value):
            out.append(values(check, label, (f"{side} {name}", f"{side} custom"), a, b, allowance(err, 2)))
    return out


def alone(plan: Plan, st) -> list[Finding]:
    """One side in low precision (`crosscheck.check` given one framework): its forward values
    and gradients vs the float64 oracle, as `paired` compares each of two sides."""
    if not plan.low or len(plan.sides) != 1:
        return []
    side = plan.sides[0]
    out, sides = [], ("float64 oracle", side)
    oracle, rnd = st[plan.reference(side)], st[plan.rounding()]
    for check, stage in (("forward", plan.forward(side)), ("grad", plan.vjp(side))):
        got = st[stage]
        if got.error or oracle.error or rnd.error:
            out.append(error(check, "-", pair(*sides), got.error, oracle.error, rnd.error))
            continue
        if check == "forward":
            items = [(out_label(i, len(got.value)), v, oracle.value.outs[i], rnd.value.outs[i]) for i, v in enumerate(got.value)]
        else:
            items = [
                (f"grad of {t.name}", g, oracle.value.grads[i], rnd.value.grads[i])
                for i, (t, g) in enumerate(zip(plan.case.tensors, got.value.grads)) if t.differentiable and g is not None
            ]
        out += [values(check, label, sides, o, v, allowance(e, 1)) for label, v, o, e in items]
    return out


def shapes(plan: Plan, st) -> list[Finding]:
    """Each raw gradient has its primal's shape (in its framework's layout) and dtype."""
    out, case = [], plan.case
    for side in SIDES:
        stage = st[plan.vjp(side)]
        label = f"{side} custom vjp"
        if stage.error:
            out.append(error("grad-shape", "-", label, stage.error))
            continue
        problems = []
        for t, meta, want in zip(case.tensors, stage.value.meta, stage.value.expected):
            if t.differentiable and meta != want:
                got = "missing" if meta is None else f"shape {meta[0]} {meta[1]}"
                problems.append(f"grad of {t.name}: {got}, expected {want[0]} {want[1]}")
        out.append(verdict("grad-shape", "all gradients", label, problems))
    for side, label in zip(SIDES, ("torch module .grad", "jax module nnx.grad")):
        stage = st[plan.module(side)]
        if stage.error:
            out.append(error("grad-shape", "-", label, stage.error))
        elif stage.value is not None:
            out.append(verdict("grad-shape", "all gradients", label, stage.value.problems))
    return out


def contract(plan: Plan, st) -> list[Finding]:
    """The raw backward (torch `Function.backward`, JAX `custom_vjp` bwd) keeps its contract."""
    out = []
    for side, label in zip(SIDES, ("torch Function.backward", "jax custom_vjp bwd")):
        stage = st[plan.contract(side)]
        if stage.error:
            out.append(error("grad-contract", "-", label, stage.error))
        else:
            out.append(verdict("grad-contract", "all gradients", label, stage.value))
    return out


def grads(plan: Plan, st) -> list[Finding]:
    out, case = [], plan.case
    t, j, oracle, rnd = st[plan.vjp("torch")], st[plan.vjp("jax")], st[plan.reference("torch")], st[plan.rounding()]
    needed = oracle if plan.low else Outcome()  # as in `forward`
    if t.error or j.error or needed.error or rnd.error:
        out.append(error("grad", "-", "torch vs jax", t.error, j.error, needed.error, rnd.error))
    else:
        for i, tensor in enumerate(case.tensors):
            if tensor.differentiable and t.value.grads[i] is not None and j.value.grads[i] is not None:
                err, o = rnd.value.grads[i], oracle.value.grads[i] if plan.low else None
                out += paired(plan, "grad", f"grad of {tensor.name}", t.value.grads[i], j.value.grads[i], o, err)
    tm, jm = st[plan.module("torch")], st[plan.module("jax")]
    if tm.error or jm.error:
        out.append(error("grad-module", "-", "torch module vs jax module", tm.error, jm.error))
    elif tm.value is not None and jm.value is not None and not oracle.error and not rnd.error:
        for i, tensor in enumerate(case.tensors):
            a, b = tm.value.grads[i], jm.value.grads[i]
            if tensor.differentiable and a is not None and b is not None:
                o, e = oracle.value.grads[i][:1], rnd.value.grads[i][:1]
                out += paired(plan, "grad-module", f"grad of {tensor.name}", a, b, o, e)
    if plan.low:
        return out

    def gradients(ref, cust, rnd):
        return [
            (f"grad of {t.name}", a, b, e)
            for t, a, b, e in zip(case.tensors, ref.grads, cust.grads, rnd.grads)
            if t.differentiable and a is not None and b is not None
        ]

    return out + against_reference(plan, st, "grad-autodiff", plan.vjp, "autodiff", gradients)


def second_order(plan: Plan, st) -> list[Finding]:
    """Hessian-vector products: torch double backward vs JAX jvp of grad, and each vs the
    same product from autodiff of its reference forward."""
    out, rnd = [], st[plan.rounding(hvp=True)]
    comparisons = [
        ("hvp", ("torch", "jax"), plan.hvp("torch"), plan.hvp("jax")),
        *(("hvp-autodiff", (f"{s} autodiff", f"{s} custom"), plan.hvp(s, "reference"), plan.hvp(s)) for s in SIDES),
    ]
    for check, sides, expected, actual in comparisons:
        exp, act = st[expected], st[actual]
        if exp.error or act.error or rnd.error:
            out.append(error(check, "-", pair(*sides), exp.error, act.error, rnd.error))
            continue
        for t, a, b, err in zip(plan.case.tensors, exp.value, act.value, rnd.value):
            if t.differentiable:
                out.append(values(check, f"hvp of {t.name}", sides, a, b, allowance(err, 2)))
    return out


def finite_differences(plan: Plan, st, inputs, side: str) -> list[Finding]:
    """Directional derivative of `L = sum(ct * f)` along a random unit `v`, per trial.

    The five-point central difference `(8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h` errs by
    about `1.5 dL / h` (rounding, `dL` the rounding error of one evaluation of `L`) plus
    `h^4 |L^(5)| / 30` (truncation), where the two-point difference left `h^2 |L'''| / 6`.
    Both are measured against `A = sum |ct| (1 + |f|)`, the size of the terms in `L`. `dL`
    is `u A` plus `sum |ct| e`, `e` the outputs' rounding errors (the rounding model):
    where the outputs are small through cancellation, their intermediates, not `A`, set
    the size of the rounding of `L`. The bound allows `10 (1.5 dL / (A h) + h^2)`: the
    stencil's rounding, plus the two-point difference's truncation allowance, kept for
    trials where the derivatives are huge (a batch whose variance is nearly 0).
    """
    sides = ("central difference", f"{side} custom")
    custom, rounding = st[plan.vjp(side)], st[plan.rounding()]
    if custom.error or rounding.error:
        return [error("finite-diff", "-", pair(*sides), custom.error, rounding.error)]
    at = {m: st[plan.forward(side, m)] for m in FD_SHIFTS}
    failed = next((o.error for o in at.values() if o.error), None)
    if failed:
        return [error("finite-diff", "-", pair(*sides), failed)]
    u, h, k = UNIT_ROUNDOFF["float64"], FD_STEP, inputs.trials
    cts, direction = inputs.cts, inputs.direction

    def fd():
        per_trial = lambda parts: sum(np.sum(p.reshape(k, -1), axis=1) for p in parts)  # noqa: E731
        loss = lambda m: per_trial(o * c for o, c in zip(at[m].value, cts))  # noqa: E731
        outs, grads = custom.value.outs, custom.value.grads
        scale = per_trial(np.abs(c) * (1 + np.abs(o)) for o, c in zip(outs, cts))
        rounded = u * scale + per_trial(np.abs(c) * e for e, c in zip(rounding.value.outs, cts))
        numeric = (8 * (loss(1) - loss(-1)) - (loss(2) - loss(-2))) / (12 * h)
        analytic = per_trial(g * direction[t.name] for t, g in zip(plan.case.tensors, grads) if t.differentiable and g is not None)
        return numeric / scale, analytic / scale, 10 * (1.5 * rounded / (scale * h) + h * h)

    # The arithmetic on a broken layer's outputs (a wrong shape) fails as its stage would.
    done = attempt(f"{side} finite differences", fd)
    if done.error:
        return [error("finite-diff", "-", pair(*sides), done.error)]
    hint = "(directional derivative per trial, divided by sum |ct| (1 + |f|))"
    return [values("finite-diff", "directional derivative", sides, *done.value, hints=[hint])]


def every(plan: Plan, st, inputs) -> list[Finding]:
    """Every check of the plan, in the report's order."""
    out = forward(plan, st) + alone(plan, st) + shapes(plan, st) + contract(plan, st) + grads(plan, st)
    if plan.finite_differences:
        for side in SIDES:
            out += finite_differences(plan, st, inputs, side)
    if plan.second_order:
        out += second_order(plan, st)
    return out
