"""Runs every check of one case in one dtype on one device, and collects the results.

The stages (custom and reference VJPs on each side, the modules, the float64 oracle, the raw
backward contract, finite differences) each run once; a stage that raises turns the checks
that need it into failed checks carrying its error, and every other check still runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import traceback
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from .compare import SPREAD_DRAWS, UNIT_ROUNDOFF, Comparison, Tolerance, allowance, compare, rounding_units
from .registry import DTYPES, LOW_PRECISION, Case

# Finite differences: the step, about the cube root of float64's unit roundoff (see
# `CaseRun.check_finite_differences`), and the stencil's points, in steps.
FD_STEP = UNIT_ROUNDOFF["float64"] ** (1 / 3)
FD_SHIFTS = (-2, -1, 1, 2)

# The raw backward called with a subset of `needs_input_grad` must give the gradients it gives
# with all of them: the same code on the same values, off by no more than a reordering of its
# sums. Allowed: this many unit roundoffs, relative to the gradient's root-mean-square.
CONTRACT_ROUNDING = 64


@dataclass
class CheckResult:
    layer: str
    dtype: str
    device: str
    check: str
    tensor: str
    compared: str
    passed: bool
    max_abs_err: float | None
    max_rel_err: float | None
    atol: float | None
    rtol: float | None
    ratio: float | None
    message: str
    shape: str = ""  # the shape bucket's dimensions; "" for the shapes the case declares

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Outcome:
    value: object = None
    error: str | None = None


def _stage(label: str, thunk, clock: dict | None = None) -> Outcome:
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


def _then(request, post):
    """`request` (a JAX adapter `Request`) finishing with `post` applied to its result."""
    finish = request.finish
    return dataclasses.replace(request, finish=lambda raw: post(finish(raw)))


def round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """`a` rounded once to `dtype`, held in float64, so both frameworks get identical values."""
    import ml_dtypes

    np_dtype = {"float64": np.float64, "float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
    return np.asarray(a, dtype=np.float64).astype(np_dtype[dtype]).astype(np.float64)


def case_rng(seed: int, case: Case, dtype: str) -> np.random.Generator:
    """One stream per (seed, case, dtype): a case draws the same values whatever else runs."""
    return np.random.default_rng([seed, zlib.crc32(case.name.encode()), DTYPES.index(dtype)])


def repro_command(case: Case, dtype: str, device: str, seed: int, trials: int, shapes: int = 1) -> str:
    select = case.selector or f"--layer {case.name}"
    if case.origin and not case.selector:  # a case from outside: its module registers it
        select = f"--cases {case.origin} {select}"
    more = f" --shapes {shapes}" if shapes > 1 else ""
    return f"python -m crosscheck {select} --dtype {dtype} --device {device} --seed {seed} --trials {trials}{more}"


class CaseRun:
    """All checks of `case` in `dtype` on `device`, with `trials` fresh draws batched together."""

    def __init__(self, case: Case, dtype: str, device: str, trials: int, seed, torch, jax, bucket: tuple[int, str] = (0, "")):
        # Several seeds (a soak) run as one batch: seed s contributes the same `trials` draws
        # as a run with `--seed s`, so any failing seed reproduces on its own.
        self.seeds = list(seed) if isinstance(seed, (list, tuple, range)) else [seed]
        self.seed, self.per_seed = self.seeds[0], trials
        self.case, self.dtype, self.device, self.trials = case, dtype, device, trials * len(self.seeds)
        self.torch, self.jax = torch, jax
        self.low = dtype in LOW_PRECISION
        self.results: list[CheckResult] = []
        # Shape bucket k (0: the declared shapes) is reproduced by running buckets 0..k.
        self.bucket, self.shape = bucket
        self.repro = repro_command(case, dtype, device, self.seed, trials, self.bucket + 1)
        self.clock: dict[str, float] = {}  # seconds per stage: the frameworks' share of the run
        self.fused: dict = {}  # JAX stages' values from one program (`_fuse`), by stage key

    def _stage(self, label, thunk) -> Outcome:
        return _stage(label, thunk, self.clock)

    # -- recording -----------------------------------------------------------------------
    def _record(self, check, tensor, compared, passed, cmp: Comparison | None, lines: list[str]):
        head = f"{'passed' if passed else 'FAILED'} {self.case.name} / {self.dtype} / {self.device} / {check} / {tensor} ({compared})"
        repro = self.repro
        if cmp is not None and cmp.bad_trials and len(self.seeds) > 1:
            failing = sorted({self.seeds[t // self.per_seed] for t in cmp.bad_trials})
            lines = [*lines, f"Failing seeds: {', '.join(map(str, failing[:20]))}{' ...' if len(failing) > 20 else ''}"]
            repro = repro_command(self.case, self.dtype, self.device, failing[0], self.per_seed, self.bucket + 1)
        if self.shape:
            lines = [f"Shapes: {self.shape}", *lines]
        message = "" if passed else "\n".join([head, *("  " + ln for ln in lines), f"  Reproduce: {repro}"])
        self.results.append(
            CheckResult(
                self.case.name, self.dtype, self.device, check, tensor, compared, passed,
                None if cmp is None else cmp.max_abs, None if cmp is None else cmp.max_rel,
                None if cmp is None else cmp.atol, None if cmp is None else cmp.rtol,
                None if cmp is None else cmp.ratio, message, self.shape,
            )
        )

    def values(self, check, tensor, compared, expected, actual, allowed, *, note=()):
        """`compared` reads "<expected> vs <actual>"; hints name the two sides that way.
        `allowed`: per element (`compare.allowance`), or a `Tolerance`."""
        names = compared.split(",")[0].split(" vs ")
        cmp = compare(expected, actual, allowed, names=tuple(names) if len(names) == 2 else None)
        self._record(check, tensor, compared, cmp.passed, cmp, [*note, *cmp.lines] if cmp.lines else [])

    def error(self, check, tensor, compared, *errors: str | None):
        self._record(check, tensor, compared, False, None, [e for e in errors if e])

    def verdict(self, check, tensor, compared, problems: list[str]):
        self._record(check, tensor, compared, not problems, None, problems)

    # -- data ----------------------------------------------------------------------------
    def draw(self):
        """Inputs, cotangents and finite-difference directions, in that order, per seed."""
        case, k = self.case, self.per_seed
        diff = [t for t in case.tensors if t.differentiable]
        parts = []
        for seed in self.seeds:
            rng = case_rng(seed, case, self.dtype)
            data = {}
            for t in case.tensors:
                a = np.asarray(t.draw(rng, (k, *t.shape)))
                data[t.name] = round_to(a, self.dtype) if t.kind == "float" else a
            if not parts:
                self.out_shapes = self._output_shapes(data)
            cts = [round_to(rng.standard_normal((k, *s)), self.dtype) for s in self.out_shapes]
            direction = {t.name: rng.standard_normal((k, *t.shape)) for t in diff}
            norm = np.sqrt(sum(np.sum(v.reshape(k, -1) ** 2, axis=1) for v in direction.values()))
            direction = {n: v / norm.reshape((k,) + (1,) * (v.ndim - 1)) for n, v in direction.items()}
            parts.append((data, cts, direction))
        cat = lambda arrays: np.concatenate(arrays) if len(arrays) > 1 else arrays[0]  # noqa: E731
        self.data = {t.name: cat([p[0][t.name] for p in parts]) for t in case.tensors}
        self.cts = [cat([p[1][i] for p in parts]) for i in range(len(self.out_shapes))]
        self.direction = {t.name: cat([p[2][t.name] for p in parts]) for t in diff}

    def _output_shapes(self, data) -> list[tuple[int, ...]]:
        """The outputs' shapes in torch's layout, for one trial of `data`. From torch's
        reference: eager torch costs a millisecond, where tracing JAX's for shapes alone cost
        about 25 ms per case."""
        one = [self.torch.from_numpy(data[t.name][0], t.kind, "float64") for t in self.case.tensors]
        return self.torch.output_shapes(self.case.torch_ref, one)

    def _out_layouts(self, n):
        lays = self.case.out_layouts
        return lays if len(lays) == n else lays * n

    def _jax_array(self, t, a, dtype=None, batched=True):
        if not batched:  # one trial: add the trial axis for the layout, then drop it
            return self.jax.from_numpy(t.layout.to_jax(a[None])[0], t.kind, dtype or self.dtype, batched=False, beside=self.trials)
        return self.jax.from_numpy(t.layout.to_jax(a), t.kind, dtype or self.dtype)

    def _args(self, side, dtype=None, shift=None, trial=None):
        """Every input, all trials or (`trial`) one without the trial axis, cut in numpy so
        that no framework runs an op to slice it."""
        out = []
        for t in self.case.tensors:
            a = self.data[t.name]
            if shift is not None and t.differentiable:
                a = a + shift * self.direction[t.name]
            if trial is not None:
                a = a[trial]
            if side == "torch":
                out.append(self.torch.from_numpy(a, t.kind, dtype or self.dtype, contiguous=not self.case.noncontiguous))
            else:
                out.append(self._jax_array(t, a, dtype, batched=trial is None))
        return out

    def _cts(self, side, dtype=None, trial=None):
        cts = self.cts if trial is None else [c[trial] for c in self.cts]
        if side == "torch":
            return [self.torch.from_numpy(c, "float", dtype or self.dtype) for c in cts]
        lays = self._out_layouts(len(self.cts))
        if trial is None:
            return [self.jax.from_numpy(lay.to_jax(c), "float", dtype or self.dtype) for lay, c in zip(lays, cts)]
        return [
            self.jax.from_numpy(lay.to_jax(c[None])[0], "float", dtype or self.dtype, batched=False, beside=self.trials)
            for lay, c in zip(lays, cts)
        ]

    def _named(self, side, fn) -> dict:
        """The JAX program's name for the program cache: the case, its shape bucket and which
        of the case's functions runs. (Both sides take the same arguments otherwise.)"""
        roles = {"custom": self.case.jax_fn, "reference": self.case.jax_ref, "module": self.case.jax_module}
        role = next((r for r, f in roles.items() if f is fn), None)
        return {} if side == "torch" or role is None else {"name": f"{self.case.name} [{self.shape}] {role}"}

    def _vjp(self, side, fn, dtype=None):
        if side == "jax":
            return self._jax(("vjp", fn, dtype), lambda: self._jax_vjp(fn, dtype))
        diff = [t.differentiable for t in self.case.tensors]
        return self.torch.vjp(fn, self._args(side, dtype), diff, self._cts(side, dtype))

    def _jax_vjp(self, fn, dtype=None):
        diff = [t.differentiable for t in self.case.tensors]
        request = self.jax.vjp_request(fn, self._args("jax", dtype), diff, self._cts("jax", dtype), **self._named("jax", fn))

        def to_torch_layout(value):  # where all comparisons happen
            outs, grads, meta = value
            outs = tuple(lay.from_jax(o) for lay, o in zip(self._out_layouts(len(outs)), outs))
            grads = [None if g is None else t.layout.from_jax(g) for t, g in zip(self.case.tensors, grads)]
            return outs, grads, meta

        return _then(request, to_torch_layout)

    def _forward(self, side, fn, shift=None):
        if side == "jax":
            return self._jax(("forward", fn, shift), lambda: self._jax_forward(fn, shift))
        return self.torch.forward(fn, self._args(side, shift=shift))

    def _jax_forward(self, fn, shift=None):
        request = self.jax.forward_request(fn, self._args("jax", shift=shift), **self._named("jax", fn))
        return _then(request, lambda outs: tuple(lay.from_jax(o) for lay, o in zip(self._out_layouts(len(outs)), outs)))

    def _rounding(self, fn, hvp: bool = False):
        """How far rounding in the dtype under test may move each element of `fn`'s outputs
        and gradients (or, with `hvp`, of its Hessian products): measured in float64 on the
        rounded inputs, held in torch's layout. Its program takes the unit roundoffs as
        arguments and is not fused with the dtype's others, so one compiled program serves
        every dtype of a shape bucket."""
        case = self.case
        diff = [t.differentiable for t in case.tensors]
        args, cts = self._args("jax", "float64"), self._cts("jax", "float64")
        more = dict(units=rounding_units(self.dtype), draws=SPREAD_DRAWS, name=self._named("jax", fn).get("name"))
        if hvp:
            vs = [self._jax_array(t, self.direction[t.name], "float64") for t in case.tensors if t.differentiable]
            request = self.jax.rounding_request(fn, args, diff, cts, vs=vs, **more)
            return _then(request, lambda hv: [None if h is None else t.layout.from_jax(h) for t, h in zip(case.tensors, hv)])
        request = self.jax.rounding_request(fn, args, diff, cts, **more)

        def to_torch_layout(value):
            outs, grads = value
            outs = tuple(lay.from_jax(o) for lay, o in zip(self._out_layouts(len(outs)), outs))
            return outs, [None if g is None else t.layout.from_jax(g) for t, g in zip(case.tensors, grads)]

        return _then(request, to_torch_layout)

    def _rounding_both(self, hvp: bool = False):
        """The larger, per element, of the rounding errors of the reference and of the custom
        JAX function (`_rounding`): the two compute in their own ways, and an error that one
        way's cancellation makes (`1 + erf(x)` for gelu at x = -3.5, where the reference
        computes `erfc`) is the other way's too, if it computes as the custom port does. Where
        one of the two raises, the other's model serves alone (the broken one fails its own
        checks); where both raise, the custom function's error is the stage's."""
        models = []
        for fn in (self.case.jax_ref, self.case.jax_fn):
            try:
                models.append(self.jax.run_on_host(self._rounding(fn, hvp)))
            except Exception:  # a broken function fails its own checks; the other's model serves
                if fn is self.case.jax_fn and not models:
                    raise
        if len(models) == 1:
            return models[0]
        ref, custom = models
        larger = lambda a, b: b if a is None else a if b is None else np.maximum(a, b)  # noqa: E731
        if hvp:
            return [larger(a, b) for a, b in zip(ref, custom)]
        return tuple(map(larger, ref[0], custom[0])), [larger(a, b) for a, b in zip(ref[1], custom[1])]

    def _jax(self, key, request):
        """The JAX stage `key`: its value from the case run's fused program (`_fuse`) where it
        ran there, else its `request()` run alone."""
        if key in self.fused:
            return self.fused[key]
        return self.jax.run(request())

    def _fuse(self) -> dict:
        """Every JAX program this case run needs, run as one (`JaxAdapter.run_together`):
        `{stage key: value}`. A request that cannot be made is left out, and where the fused
        program fails, nothing is returned: each stage then runs its own program, and reports
        its own error, as if nothing had been fused."""
        case = self.case
        plan = {
            ("vjp", case.jax_fn, None): lambda: self._jax_vjp(case.jax_fn),
            ("forward", case.jax_fn, None): lambda: self._jax_forward(case.jax_fn),
        }
        oracle = "float64" if self.low else None
        plan[("vjp", case.jax_ref, oracle)] = lambda: self._jax_vjp(case.jax_ref, oracle)
        if case.jax_module is not None:
            plan[("module",)] = self._jax_module
        if self.dtype == "float64":
            for m in FD_SHIFTS:
                plan[("forward", case.jax_fn, m * FD_STEP)] = functools.partial(self._jax_forward, case.jax_fn, m * FD_STEP)
        if case.second_order and not self.low:
            for fn in (case.jax_fn, case.jax_ref):
                plan[("hvp", fn)] = functools.partial(self._jax_hvp, fn)
        requests = {}
        for key, make in plan.items():
            try:
                requests[key] = make()
            except Exception:  # its stage makes it again, and reports the error
                continue
        try:
            return dict(zip(requests, self.jax.run_together(list(requests.values()))))
        except Exception:
            return {}

    # -- the run -------------------------------------------------------------------------
    def run(self) -> list[CheckResult]:
        case = self.case
        self.jax.new_case()
        drawn = self._stage("drawing inputs", self.draw)
        if drawn.error:
            self.error("setup", "-", "inputs", drawn.error)
            return self.results
        self.fused = self._stage("jax programs, fused", self._fuse).value or {}
        stages = {
            "torch": self._stage("torch custom vjp", lambda: self._vjp("torch", case.torch_fn)),
            "jax": self._stage("jax custom vjp", lambda: self._vjp("jax", case.jax_fn)),
            "torch plain": self._stage("torch custom forward", lambda: self._forward("torch", case.torch_fn)),
            "jax plain": self._stage("jax custom forward", lambda: self._forward("jax", case.jax_fn)),
            "torch module": self._stage("torch module", lambda: self._module("torch")),
            "jax module": self._stage("jax module", lambda: self._module("jax")),
            "rounding": self._stage("rounding model (float64)", self._rounding_both),
        }
        if self.low:
            oracle = self._stage("float64 oracle (jax reference)", lambda: self._vjp("jax", case.jax_ref, "float64"))
            stages["torch ref"] = stages["jax ref"] = oracle
        else:
            stages["torch ref"] = self._stage("torch reference vjp", lambda: self._vjp("torch", case.torch_ref))
            stages["jax ref"] = self._stage("jax reference vjp", lambda: self._vjp("jax", case.jax_ref))
        self.check_forward(stages)
        self.check_shapes(stages)
        self.check_contract()
        self.check_grads(stages)
        if self.dtype == "float64":
            for side in ("torch", "jax"):
                self.check_finite_differences(side, stages[side], stages["rounding"])
        if case.second_order and not self.low:
            self.check_second_order()
        return self.results

    def _module(self, side):
        """Trial 0 through the user-facing module; grads in torch's layout, tensors' order.

        Returns `(outs, grads, problems)`, `problems` listing raw gradients whose shape or
        dtype differs from their primal's.
        """
        case = self.case
        if side == "jax":
            return None if case.jax_module is None else self._jax(("module",), self._jax_module)
        if case.torch_module is None:
            return None
        n_in = len(case.inputs)
        args = self._args(side, trial=0)
        xs = args[:n_in]
        cts = self._cts(side, trial=0)
        in_diff = [t.differentiable for t in case.inputs]
        keywords = [t.name if t.keyword else None for t in case.inputs]
        module = case.torch_module(self.torch.torch_dtype(self.dtype), self.torch.device)
        state = {t.name: a for t, a in zip(case.params, args[n_in:])}
        outs, grads, meta = self.torch.module_grads(module, xs, in_diff, state, cts, keywords)
        ordered = [grads.get(i) for i in range(n_in)] + [grads.get(t.name) for t in case.params]
        problems = []
        for t, m, x in zip(case.tensors, [meta.get(i) for i in range(n_in)] + [meta.get(t.name) for t in case.params], args):
            want = (tuple(t.shape), self.dtype)
            if t.differentiable and (m is None or m != want):
                problems.append(f"grad of {t.name}: {'missing' if m is None else f'{m[0]} {m[1]}'}, expected {want[0]} {want[1]}")
        return outs, ordered, problems

    def _jax_module(self):
        case = self.case
        n_in = len(case.inputs)
        args = self._args("jax", trial=0)
        in_diff = [t.differentiable for t in case.inputs]
        keywords = [t.name if t.keyword else None for t in case.inputs]
        pmap = case.module_param_map()
        torch_layout = {t.name: self.data[t.name][0] for t in case.params}
        # In the run's dtype, as the torch module holds them: Flax keeps batch stats in
        # float32 whatever the module's dtype, which would round float64 running statistics.
        module = self.jax.build_module(case.jax_module, self.dtype, pmap.to_nnx(torch_layout))
        request = self.jax.module_request(
            module, args[:n_in], in_diff, self._cts("jax", trial=0), keywords,
            key=(case.jax_module, self.dtype), **self._named("jax", case.jax_module),
        )

        def to_torch_layout(value):
            outs, in_grads, p_grads, meta, expected = value
            outs = tuple(lay.from_jax(o[None]) for lay, o in zip(self._out_layouts(len(outs)), outs))
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
            return outs, ordered, problems

        return _then(request, to_torch_layout)

    def _out_label(self, i, n):
        return "output" if n == 1 else f"output {i}"

    def _pair(self, check, label, t_val, j_val, o_val, err, suffix=""):
        """torch vs jax in float64/float32; each vs the float64 oracle (and the gap) in low
        precision. `err` is the elements' rounding error scale (`compare.rounding_error`)."""
        if not self.low:
            self.values(check, label, f"torch vs jax{suffix}", t_val, j_val, allowance(err, 2))
            return
        self.values(check, label, f"float64 oracle vs torch{suffix}", o_val, t_val, allowance(err, 1))
        self.values(check, label, f"float64 oracle vs jax{suffix}", o_val, j_val, allowance(err, 1))
        self.values(check, label, f"torch vs jax{suffix}", t_val, j_val, allowance(err, 2))

    def check_forward(self, st):
        """Forward values come from plain forward runs, so a broken backward never fails them."""
        t, j, plain = st["torch plain"], st["jax plain"], st["jax plain"]
        vjp_j, tm, jm = st["jax"], st["torch module"], st["jax module"]
        ref_t, ref_j, rnd = st["torch ref"], st["jax ref"], st["rounding"]
        oracle = ref_t if self.low else Outcome()  # in float64 and float32 the sides meet alone
        if t.error or j.error or oracle.error or rnd.error:
            self.error("forward", "-", "torch vs jax", t.error, j.error, oracle.error, rnd.error)
        else:
            n = len(t.value)
            if len(j.value) != n:
                self.error("forward", "-", "torch vs jax", f"torch returns {n} outputs, jax {len(j.value)}")
            for i in range(min(n, len(j.value))):
                self._pair("forward", self._out_label(i, n), t.value[i], j.value[i], oracle.value and oracle.value[0][i], rnd.value[0][i])
        if tm.error or jm.error or (tm.value is not None and jm.value is not None):
            if tm.error or jm.error or ref_t.error or rnd.error:
                self.error("forward", "-", "torch module vs jax module", tm.error, jm.error, ref_t.error, rnd.error)
            else:
                for i, (a, b) in enumerate(zip(tm.value[0], jm.value[0])):
                    o, e = ref_t.value[0][i][:1], rnd.value[0][i][:1]
                    self._pair("forward", self._out_label(i, len(tm.value[0])), a, b, o, e, ", modules")
        if vjp_j.error or plain.error or rnd.error:
            self.error("forward-fwd-rule", "-", "jax f vs fwd primal", vjp_j.error, plain.error, rnd.error)
        else:
            for i, (a, b) in enumerate(zip(plain.value, vjp_j.value[0])):
                label = self._out_label(i, len(plain.value))
                self.values("forward-fwd-rule", label, "jax f vs fwd primal", a, b, allowance(rnd.value[0][i], 2))
        if self.low:
            return
        for side, cust, ref in (("torch", t, ref_t), ("jax", plain, ref_j)):
            if cust.error or ref.error or rnd.error:
                self.error("forward-reference", "-", f"{side} custom vs reference", cust.error, ref.error, rnd.error)
                continue
            for i, (a, b) in enumerate(zip(ref.value[0], cust.value)):
                allowed = allowance(rnd.value[0][i], 2)
                self.values("forward-reference", self._out_label(i, len(ref.value[0])), f"{side} reference vs {side} custom", a, b, allowed)

    def check_shapes(self, st):
        case, dtype = self.case, self.dtype
        for label, stage, shape_of in (
            ("torch custom vjp", st["torch"], lambda t: t.shape),
            ("jax custom vjp", st["jax"], lambda t: t.layout.jax_shape(t.shape)),
        ):
            if stage.error:
                self.error("grad-shape", "-", label, stage.error)
                continue
            problems = []
            for t, meta in zip(case.tensors, stage.value[2]):
                want = (tuple(shape_of(t)), dtype)
                if t.differentiable and meta != want:
                    got = "missing" if meta is None else f"shape {meta[0]} {meta[1]}"
                    problems.append(f"grad of {t.name}: {got}, expected {want[0]} {want[1]}")
            self.verdict("grad-shape", "all gradients", label, problems)
        for label, stage in (("torch module .grad", st["torch module"]), ("jax module nnx.grad", st["jax module"])):
            if stage.error:
                self.error("grad-shape", "-", label, stage.error)
            elif stage.value is not None:
                self.verdict("grad-shape", "all gradients", label, stage.value[2])

    def check_contract(self):
        def contract():
            from .adapters.torch_adapter import backward_contract, record_functions

            args = self._args("torch", trial=0)
            for a, t in zip(args, self.case.tensors):
                if t.differentiable:
                    a.requires_grad_(True)
            calls = record_functions(self.case.torch_fn, args)
            if not calls:
                return ["no autograd.Function was applied by the custom forward"]
            rng = np.random.default_rng([self.seed, 1])
            tol = CONTRACT_ROUNDING * UNIT_ROUNDOFF[self.dtype]
            return [p for cls, a in calls for p in backward_contract(cls, a, rng, tol, tol)]

        out = self._stage("torch raw backward", contract)
        if out.error:
            self.error("grad-contract", "-", "torch Function.backward", out.error)
        else:
            self.verdict("grad-contract", "all gradients", "torch Function.backward", out.value)

        def jax_contract():
            from .adapters.jax_contract import bwd_contract, record_custom_vjps

            def verdict(args):
                calls = record_custom_vjps(self.case.jax_fn, args)
                if not calls:
                    return ["no jax.custom_vjp was called by the custom forward"]
                return [p for f, a, kw in calls for p in bwd_contract(f, a, kw)]

            args = tuple(self._args("jax", trial=0))
            name = self._named("jax", self.case.jax_fn).get("name")
            return self.jax.remember(name and f"{name} contract", self.case.jax_fn, args, lambda: verdict(args))

        out = self._stage("jax custom_vjp fwd/bwd", jax_contract)
        if out.error:
            self.error("grad-contract", "-", "jax custom_vjp bwd", out.error)
        else:
            self.verdict("grad-contract", "all gradients", "jax custom_vjp bwd", out.value)

    def check_grads(self, st):
        case = self.case
        t, j, ref_t, ref_j, rnd = st["torch"], st["jax"], st["torch ref"], st["jax ref"], st["rounding"]
        oracle = ref_t if self.low else Outcome()
        if t.error or j.error or oracle.error or rnd.error:
            self.error("grad", "-", "torch vs jax", t.error, j.error, oracle.error, rnd.error)
        else:
            for i, tensor in enumerate(case.tensors):
                if tensor.differentiable and t.value[1][i] is not None and j.value[1][i] is not None:
                    err = rnd.value[1][i]
                    self._pair("grad", f"grad of {tensor.name}", t.value[1][i], j.value[1][i], oracle.value and oracle.value[1][i], err)
        tm, jm = st["torch module"], st["jax module"]
        if tm.error or jm.error:
            self.error("grad-module", "-", "torch module vs jax module", tm.error, jm.error)
        elif tm.value is not None and jm.value is not None and not ref_t.error and not rnd.error:
            for i, tensor in enumerate(case.tensors):
                a, b = tm.value[1][i], jm.value[1][i]
                if tensor.differentiable and a is not None and b is not None:
                    self._pair("grad-module", f"grad of {tensor.name}", a, b, ref_t.value[1][i][:1], rnd.value[1][i][:1])
        if self.low:
            return
        for side, cust, ref in (("torch", t, ref_t), ("jax", j, ref_j)):
            if cust.error or ref.error or rnd.error:
                self.error("grad-autodiff", "-", f"{side} custom vs autodiff", cust.error, ref.error, rnd.error)
                continue
            for i, tensor in enumerate(case.tensors):
                a, b = ref.value[1][i], cust.value[1][i]
                if tensor.differentiable and a is not None and b is not None:
                    allowed = allowance(rnd.value[1][i], 2)
                    self.values("grad-autodiff", f"grad of {tensor.name}", f"{side} autodiff vs {side} custom", a, b, allowed)

    def _hvp(self, side, fn):
        if side == "jax":
            return self._jax(("hvp", fn), lambda: self._jax_hvp(fn))
        diff = [t.differentiable for t in self.case.tensors]
        vs = [self.torch.from_numpy(self.direction[t.name], "float", self.dtype) for t in self.case.tensors if t.differentiable]
        return self.torch.hvp(fn, self._args(side), diff, self._cts(side), vs)

    def _jax_hvp(self, fn):
        diff = [t.differentiable for t in self.case.tensors]
        vs = [self._jax_array(t, self.direction[t.name]) for t in self.case.tensors if t.differentiable]
        request = self.jax.hvp_request(fn, self._args("jax"), diff, self._cts("jax"), vs, **self._named("jax", fn))
        return _then(request, lambda hv: [None if h is None else t.layout.from_jax(h) for t, h in zip(self.case.tensors, hv)])

    def check_second_order(self):
        """Hessian-vector products: torch double backward vs JAX jvp of grad, and each vs the
        same product from autodiff of its reference forward."""
        case = self.case
        st = {
            "torch": self._stage("torch custom double backward", lambda: self._hvp("torch", case.torch_fn)),
            "jax": self._stage("jax custom jvp of grad", lambda: self._hvp("jax", case.jax_fn)),
            "torch ref": self._stage("torch reference double backward", lambda: self._hvp("torch", case.torch_ref)),
            "jax ref": self._stage("jax reference jvp of grad", lambda: self._hvp("jax", case.jax_ref)),
        }
        rnd = self._stage("rounding model of hvp (float64)",
                          lambda: self._rounding_both(True))
        pairs = [
            ("hvp", "torch vs jax", st["torch"], st["jax"]),
            ("hvp-autodiff", "torch autodiff vs torch custom", st["torch ref"], st["torch"]),
            ("hvp-autodiff", "jax autodiff vs jax custom", st["jax ref"], st["jax"]),
        ]
        for check, compared, exp, act in pairs:
            if exp.error or act.error or rnd.error:
                self.error(check, "-", compared, exp.error, act.error, rnd.error)
                continue
            for t, a, b, err in zip(case.tensors, exp.value, act.value, rnd.value):
                if t.differentiable:
                    self.values(check, f"hvp of {t.name}", compared, a, b, allowance(err, 2))

    def check_finite_differences(self, side, custom: Outcome, rounding: Outcome):
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
        label = f"central difference vs {side} custom"
        if custom.error or rounding.error:
            self.error("finite-diff", "-", label, custom.error, rounding.error)
            return
        u, h = UNIT_ROUNDOFF["float64"], FD_STEP
        fn = self.case.torch_fn if side == "torch" else self.case.jax_fn

        def fd():
            at = {m: self._forward(side, fn, shift=m * h) for m in FD_SHIFTS}
            k = self.trials
            per_trial = lambda parts: sum(np.sum(p.reshape(k, -1), axis=1) for p in parts)  # noqa: E731
            loss = lambda outs: per_trial(o * c for o, c in zip(outs, self.cts))  # noqa: E731
            outs, grads, _ = custom.value
            scale = per_trial(np.abs(c) * (1 + np.abs(o)) for o, c in zip(outs, self.cts))
            rounded = u * scale + per_trial(np.abs(c) * e for e, c in zip(rounding.value[0], self.cts))
            numeric = (8 * (loss(at[1]) - loss(at[-1])) - (loss(at[2]) - loss(at[-2]))) / (12 * h)
            analytic = per_trial(
                g * self.direction[t.name] for t, g in zip(self.case.tensors, grads) if t.differentiable and g is not None
            )
            return numeric / scale, analytic / scale, 10 * (1.5 * rounded / (scale * h) + h * h)

        out = self._stage(f"{side} finite differences", fd)
        if out.error:
            self.error("finite-diff", "-", label, out.error)
            return
        numeric, analytic, bound = out.value
        note = ["(directional derivative per trial, divided by sum |ct| (1 + |f|))"]
        self.values("finite-diff", "directional derivative", label, numeric, analytic, bound, note=note)


def run_case(case: Case, dtype: str, device: str, trials: int, seed: int, torch, jax, shapes: int = 1) -> list[CheckResult]:
    """Every check of `case` on each of its first `shapes` shape buckets (`registry.buckets`)."""
    from .registry import buckets

    results = []
    try:
        runs = buckets(case, shapes)
    except Exception as exc:  # a shape space that builds a broken case is a failed check
        setup = CaseRun(case, dtype, device, trials, seed, torch, jax)
        setup.error("setup", "-", "shape buckets", f"case.shapes.build raised {type(exc).__name__}: {exc}")
        results, runs = setup.results, [("", case)]
    for k, (label, bucket_case) in enumerate(runs):
        results += CaseRun(bucket_case, dtype, device, trials, seed, torch, jax, (k, label)).run()
    jax.relieve()
    return results


def worst_ratio(results: list[CheckResult]) -> float:
    ratios = [r.ratio for r in results if r.ratio is not None and not math.isnan(r.ratio)]
    return max(ratios, default=0.0)
