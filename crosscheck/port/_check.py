"""`check_port`: a torch model and an NNX model that should compute the same function, checked
the way the crosscheck checks a layer.

Each dtype run casts the torch model to that dtype and ports its weights into a copy of the
NNX model held in that dtype (so both hold the same rounded weights), draws inputs and
cotangents as a case run draws them (`CaseRun.draw`), runs one `loss.backward()` and one
`nnx.grad` per trial, and compares outputs, input gradients and every torch parameter's
gradient (nnx gradients brought back through each layer's adjoint map). float64 and float32
compare torch with NNX directly; bfloat16 and float16 compare each with a float64 oracle (the
torch model in float64 on the same rounded weights and inputs), as the harness does. Before
that, `weights` checks that the NNX model as given holds the torch model's weights, up to one
rounding into each NNX variable's dtype.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..compare import UNIT_ROUNDOFF, Tolerance
from ..convert._model import state_arrays, state_dict_to_nnx
from ..convert._pair import pair_modules
from ..layout import IDENTITY, Layout
from ..registry import Case, Tensor
from .. import checks
from ..plan import Outcome
from ..runner import CaseRun

# Whole models are judged by a scale from each result's size, not by the rounding model that
# judges the layers (docs/tolerances.md): that model evaluates one JAX function, and a port's
# NNX side is a module of modules, which it does not yet take apart. An element passes within
# `atol * max(rms(expected in its trial), 1e-2) + rtol * |expected|`, where in float64 and
# float32 `rtol = atol = B sqrt(max(K, 64)) u` (K the largest tensor, B 32 for values and 160
# for gradients), and in bfloat16 and float16 the tables below times MODEL_FACTOR.
FULL_PRECISION_BUDGET = {"values": 32.0, "grads": 160.0}
LOW_PRECISION_TABLE = {"values": {"bfloat16": 2e-2, "float16": 4e-3}, "grads": {"bfloat16": 4e-2, "float16": 8e-3}}
SCALE_FLOOR = 1e-2
# The tables hold one layer against the float64 oracle; a model chains several, and its weight
# gradients sum their rounding over every position and step. Over the eight example pairs
# (crosscheck.models, ported each way, one trial; seeds 0..89 for cnn, encoder and lm, 0..29 for
# the rest) the worst error was 2.30x the bfloat16 gradient table (cnn: a BatchNorm's bias and
# the conv bias before it, whose gradients sum cancelling terms; lm: 2.24x), 2.28x the float16
# one (encoder, grad of norm1.bias) and 1.28x the bfloat16 value table. float64 and float32:
# their worst was 0.03x.
MODEL_FACTOR = 3.0


def model_allowance(expected: np.ndarray, dtype: str, kind: str, reduction: int, sides: int = 1,
                    overrides: dict | None = None) -> np.ndarray:
    """The allowed difference per element of `expected` (trial axis first) for a port."""
    override = (overrides or {}).get(dtype, {}).get(kind)
    if override is not None:
        rtol, atol = override
    elif dtype in LOW_PRECISION_TABLE[kind]:
        rtol = atol = MODEL_FACTOR * LOW_PRECISION_TABLE[kind][dtype]
    else:
        rtol = atol = FULL_PRECISION_BUDGET[kind] * math.sqrt(max(reduction, 64)) * UNIT_ROUNDOFF[dtype]
    expected = np.asarray(expected, dtype=np.float64)
    flat = np.where(np.isfinite(expected), expected, 0.0).reshape(expected.shape[0], -1)
    rms = np.sqrt(np.mean(np.square(flat), axis=1)) if flat.shape[1] else np.zeros(flat.shape[0])
    scale = np.maximum(rms, SCALE_FLOOR).reshape((-1,) + (1,) * (expected.ndim - 1))
    return sides * (atol * scale + rtol * np.abs(expected))


def _cast_nnx(model, dtype: str):
    """A copy of `model` in `dtype`, in eval mode: every float variable (but RNG state), and
    each module's `dtype` and `param_dtype` where set (nnx.Embed fixes its compute dtype from
    its table's when built: float64 gradients would pass through float32 otherwise), as
    torch's `model.to(dtype)` casts the torch side."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from ..adapters.jax_adapter import DTYPES

    model = nnx.clone(model)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module):
            for attr in ("dtype", "param_dtype"):
                if getattr(node, attr, None) is not None and jnp.issubdtype(getattr(node, attr), jnp.floating):
                    setattr(node, attr, jnp.dtype(DTYPES[dtype]))
        elif isinstance(node, nnx.Variable) and not isinstance(node, nnx.RngState):
            value = node.get_value()
            if jnp.issubdtype(value.dtype, jnp.floating):
                # In numpy, through float64 (exact): an eager JAX cast would compile a program.
                node.set_value(jax.device_put(np.asarray(value).astype(np.float64).astype(DTYPES[dtype])))
    model.eval()
    return model


class PortRun(CaseRun):
    """The checks of one port in one dtype; `case.inputs` are the models' inputs."""

    def __init__(self, case: Case, models: tuple, mapping, dtype: str, device: str, trials: int, seed: int, torch, jax,
                 overrides: dict | None = None):
        super().__init__(case, dtype, device, trials, seed, torch, jax)
        self.overrides = overrides or {}
        self.torch_model, self.nnx_model = models
        self.mapping = mapping
        self.pairing = pair_modules(self.torch_model, self.nnx_model, mapping)
        self.largest = max((math.prod(p.shape) for p in self.torch_model.parameters()), default=1)
        if not case.selector:
            self.repro = f"crosscheck.port.check_port(torch_model, nnx_model, inputs, dtypes=[{dtype!r}], seed={seed}, trials={trials})"

    def allowed(self, kind: str, expected, sides: int = 1):
        """`model_allowance` with the longest reduction bounded by the largest parameter too."""
        sizes = [math.prod(t.shape) for t in self.case.inputs] + [math.prod(s) for s in self.inputs.out_shapes] + [self.largest]
        return model_allowance(expected, self.dtype, kind, max(sizes), sides, self.overrides)

    def _pair_model(self, check, label, kind, t_val, j_val, o_val):
        """torch vs NNX in float64/float32; each vs the float64 oracle (and the gap) in low
        precision."""
        if not self.low:
            self.record(checks.values(check, label, ("torch", "jax"), t_val, j_val, self.allowed(kind, t_val)))
            return
        self.record(checks.values(check, label, ("float64 oracle", "torch"), o_val, t_val, self.allowed(kind, o_val)))
        self.record(checks.values(check, label, ("float64 oracle", "jax"), o_val, j_val, self.allowed(kind, o_val)))
        self.record(checks.values(check, label, ("torch", "jax"), t_val, j_val, self.allowed(kind, o_val, 2)))

    # -- the models in this run's dtype ---------------------------------------------------
    def _models(self):
        t_model = copy.deepcopy(self.torch_model).to(self.torch.device, self.torch.torch_dtype(self.dtype)).eval()
        n_model = _cast_nnx(self.nnx_model, self.dtype)
        state_dict_to_nnx(t_model.state_dict(), t_model, n_model, mapping=self.mapping)
        oracle = copy.deepcopy(t_model).double() if self.low else None
        return t_model, n_model, oracle

    def _torch_runs(self, model, dtype: str):
        """`(outs, grads {input index or parameter name: g}, problems)` over the trials, with
        the trial axis first; `problems` lists gradients whose shape or dtype is not their
        parameter's (from trial 0)."""
        in_diff = [t.differentiable for t in self.case.inputs]
        keywords = [t.name if t.keyword else None for t in self.case.inputs]
        runs = []
        for trial in range(self.trials):
            model.zero_grad(set_to_none=True)
            params = {n: p.detach() for n, p in model.named_parameters()}
            view = self.inputs.for_torch(self.torch, dtype=dtype, trial=trial)
            runs.append(self.torch.module_grads(model, view.args, in_diff, params, view.cts, keywords))
        outs = tuple(np.concatenate(o) for o in zip(*(r[0] for r in runs)))
        grads = {k: np.concatenate([r[1][k] for r in runs]) for k, g in runs[0][1].items() if g is not None}
        want = {n: (tuple(p.shape), self.dtype) for n, p in model.named_parameters() if p.requires_grad}
        problems = [f"grad of {n}: {runs[0][2].get(n)}, expected {w[0]} {w[1]}" for n, w in want.items() if runs[0][2].get(n) != w]
        return outs, grads, problems

    def _jax_runs(self, model):
        in_diff = [t.differentiable for t in self.case.inputs]
        keywords = [t.name if t.keyword else None for t in self.case.inputs]
        outs, grads, problems = [], [], []
        for trial in range(self.trials):
            view = self.inputs.for_jax(self.jax, trial=trial)
            o, in_grads, p_grads, meta, expected = self.jax.module_grads(model, view.args, in_diff, view.cts, keywords)
            outs.append(tuple(lay.from_jax(x[None]) for lay, x in zip(self.inputs.out_layouts(len(o)), o)))
            g = {i: self.case.inputs[i].layout.from_jax(x[None]) for i, x in in_grads.items()}
            g.update({k: v[None] for k, v in self.pairing.to_torch(p_grads, grads=True).items()})
            grads.append(g)
            if trial == 0:
                problems = [f"grad of {k}: {meta.get(k)}, expected {w[0]} {w[1]}" for k, w in expected.items() if meta.get(k) != w]
        return (
            tuple(np.concatenate(x) for x in zip(*outs)),
            {k: np.concatenate([g[k] for g in grads]) for k in grads[0]},
            problems,
        )

    # -- checks ----------------------------------------------------------------------------
    def check_weights(self):
        """The NNX model as given holds the torch model's weights: each equal to the port of
        the torch weight up to one rounding into the NNX variable's dtype."""
        ported = self._stage("weights", lambda: self.pairing.to_nnx(state_arrays(self.torch_model.state_dict())))
        if ported.error:
            self.record(checks.error("weights", "-", "torch vs jax, as stored", ported.error))
            return
        held = _nnx_raw(self.nnx_model)
        for path in sorted(set(ported.value) & set(held)):  # the rest fail the conversion, by name
            stored = np.asarray(held[path])
            u = UNIT_ROUNDOFF.get(str(stored.dtype), 0.0)
            expected = np.asarray(ported.value[path], dtype=np.float64)[None]
            held_value = stored.astype(np.float64)[None]
            self.record(checks.values("weights", path, ("torch", "jax"), expected, held_value, Tolerance(u, 0.0), note="as stored"))

    def run(self):
        drawn = self._stage("drawing inputs", self.draw)
        models = self._stage(f"models in {self.dtype}", self._models) if not drawn.error else Outcome()
        if drawn.error or models.error:
            self.record(checks.error("setup", "-", "inputs and models", drawn.error, models.error))
            return self.results
        t_model, n_model, oracle = models.value
        torch_side = self._stage("torch model", lambda: self._torch_runs(t_model, self.dtype))
        jax_side = self._stage("nnx model", lambda: self._jax_runs(n_model))
        ref = self._stage("float64 oracle (torch model)", lambda: self._torch_runs(oracle, "float64")) if self.low else torch_side
        if torch_side.error or jax_side.error or ref.error:
            self.record(checks.error("forward", "-", "torch vs jax", torch_side.error, jax_side.error, ref.error))
            return self.results
        (t_out, t_grads, t_problems), (j_out, j_grads, j_problems), (o_out, o_grads, _) = torch_side.value, jax_side.value, ref.value
        if len(t_out) != len(j_out):
            self.record(checks.error("forward", "-", "torch vs jax", f"torch returns {len(t_out)} outputs, jax {len(j_out)}"))
        for i, (a, b) in enumerate(zip(t_out, j_out)):
            self._pair_model("forward", checks.out_label(i, len(t_out)), "values", a, b, o_out[i])
        self.record(checks.verdict("grad-shape", "all gradients", "torch model .grad", t_problems))
        self.record(checks.verdict("grad-shape", "all gradients", "nnx model nnx.grad", j_problems))
        names = {i: f"grad of {t.name}" for i, t in enumerate(self.case.inputs) if t.differentiable}
        # Every parameter: one that torch gives no gradient (unused by the forward) is named.
        names.update({n: f"grad of {n}" for n, p in t_model.named_parameters() if p.requires_grad})
        for key, label in names.items():
            if key not in t_grads or key not in j_grads:
                side = "torch" if key not in t_grads else "jax"
                self.record(checks.error("grad", label, "torch vs jax", f"the {side} model gives no gradient"))
                continue
            self._pair_model("grad", label, "grads", t_grads[key], j_grads[key], o_grads[key])
        return self.results


def _nnx_raw(model) -> dict:
    """Every variable of `model` but RNG state, by path, in its own dtype."""
    from flax import nnx

    from ..convert._core import flatten

    return flatten(nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.RngState))))


def check_port(
    torch_model,
    nnx_model,
    inputs,
    *,
    dtypes=None,
    trials: int = 1,
    seed: int = 0,
    mapping: dict[str, str] | None = None,
    out_layouts: tuple[Layout, ...] = (IDENTITY,),
    name: str | None = None,
    selector: str = "",
    device: str = "cpu",
    tolerances: dict | None = None,
):
    """Check that `nnx_model` computes what `torch_model` computes, values and gradients.

    Args:
        torch_model: a `torch.nn.Module`; it is not changed (each dtype runs on a copy).
        nnx_model: its port, an `nnx.Module` holding the same weights (`crosscheck.convert`).
        inputs: the models' inputs, each a `registry.Tensor` (shape in torch's layout, kind,
            how to draw it, `layout` into the NNX model's) or a shape, for a float input.
        dtypes: any of float64, float32, bfloat16, float16 (default: all four).
        trials: fresh draws of inputs and cotangents per dtype (each input's batch already
            holds several samples).
        mapping: `{torch module path: nnx module path}` where names differ (see `convert`).
        out_layouts: how each output maps from torch's layout into NNX's.
        name: the name in messages (default: the two classes').
        selector: the CLI words that rerun this check (`port A B --input ...`), for messages.
        tolerances: `{dtype: {"values"|"grads": (rtol, atol)}}` over `model_allowance`'s.

    Returns:
        A `session.Report`, one `CheckResult` per check; `report.passed` says whether the two
        models agree, and `report.format_failures` (crosscheck.report) says where not.
    """
    from .. import adapters
    from ..adapters import call
    from ..options import check_dtypes, check_options
    from ..results import Report
    from ..session import versions

    check_options(trials, 1, device)
    dtypes = check_dtypes(dtypes)
    inputs = tuple(t if isinstance(t, Tensor) else Tensor(f"input {i}", tuple(t)) for i, t in enumerate(inputs))
    if not inputs:
        raise ValueError(f"`inputs` (={inputs}) must name at least one input")
    results = []
    with adapters.opened(device) as (torch, jax, device):
        keywords = [t.name if t.keyword else None for t in inputs]
        shaper = copy.deepcopy(torch_model).to(torch.device, torch.torch_dtype("float64")).eval()
        case = Case(
            name=name or f"{type(torch_model).__name__} vs {type(nnx_model).__name__}", family="port", inputs=inputs,
            torch_fn=None, torch_ref=lambda *xs: call(shaper, list(xs), keywords), jax_fn=None, jax_ref=None,
            out_layouts=tuple(out_layouts), selector=selector,
        )
        for k, dtype in enumerate(dtypes):
            run = PortRun(case, (torch_model, nnx_model), mapping, dtype, device, trials, seed, torch, jax, tolerances)
            if k == 0:
                run.check_weights()
            results += run.run()
    return Report(results, seed, trials, device, f"python -m crosscheck {selector}" if selector else "check_port", versions(torch, jax))
