"""A case run's seeded draws, held once in numpy, and their views in each framework's arrays.

Inputs, cotangents and finite-difference directions are drawn in numpy (float64, rounded to
the run's dtype where they enter a computation), in torch's layout, trial axis first. A view
(`Inputs.for_torch`, `Inputs.for_jax`) places them on the framework's device in its own dtype
and layout, all trials or one (`trial`), optionally shifted along the directions (`shift`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .registry import DTYPES, Case


def round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """`a` rounded once to `dtype`, held in float64, so both frameworks get identical values."""
    import ml_dtypes

    np_dtype = {"float64": np.float64, "float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
    return np.asarray(a, dtype=np.float64).astype(np_dtype[dtype]).astype(np.float64)


def case_rng(seed: int, case: Case, dtype: str) -> np.random.Generator:
    """One stream per (seed, case, dtype): a case draws the same values whatever else runs."""
    return np.random.default_rng([seed, zlib.crc32(case.name.encode()), DTYPES.index(dtype)])


@dataclass(frozen=True)
class Inputs:
    """The draws of one case run, in torch's layout with the trial axis first.

    Attributes:
        case, dtype: what they were drawn for.
        data: every tensor's values, `{name: (trials, *shape)}`, floats rounded to `dtype`.
        cts: one cotangent per output, `(trials, *output shape)`, rounded to `dtype`.
        direction: a unit direction per trial over the differentiable tensors, `{name: array}`
            (float64, not rounded: finite differences and Hessian products move along it).
        out_shapes: the outputs' shapes for one trial.
        seeds: the seeds drawn from, in order, each giving `trials / len(seeds)` trials.
    """

    case: Case
    dtype: str
    data: dict
    cts: list
    direction: dict
    out_shapes: list
    seeds: tuple = (0,)

    @property
    def trials(self) -> int:
        return len(next(iter(self.data.values())))

    @classmethod
    def draw(cls, case: Case, dtype: str, seeds: list[int], per_seed: int, torch, shapes_of=None) -> "Inputs":
        """`per_seed` trials from each seed's stream (`case_rng`), in the order of `seeds`: seed s
        contributes what a run of seed s alone draws. `torch` (the adapter) gives the outputs'
        shapes, from the reference on one trial; `shapes_of(one)` instead where given (`one`:
        one trial's data, `{name: array}`), for a case without a torch reference."""
        diff = [t for t in case.tensors if t.differentiable]
        k, parts, out_shapes = per_seed, [], None
        for seed in seeds:
            rng = case_rng(seed, case, dtype)
            data = {}
            for t in case.tensors:
                a = np.asarray(t.draw(rng, (k, *t.shape)))
                data[t.name] = round_to(a, dtype) if t.kind == "float" else a
            if out_shapes is None and shapes_of is not None:
                out_shapes = shapes_of({n: v[0] for n, v in data.items()})
            if out_shapes is None:
                # From torch's reference on one trial: eager torch costs a millisecond, where
                # tracing JAX's for shapes alone cost more (see docs/bench.md).
                one = [torch.from_numpy(data[t.name][0], t.kind, "float64") for t in case.tensors]
                out_shapes = torch.output_shapes(case.torch_ref, one)
            cts = [round_to(rng.standard_normal((k, *s)), dtype) for s in out_shapes]
            direction = {t.name: rng.standard_normal((k, *t.shape)) for t in diff}
            norm = np.sqrt(sum(np.sum(v.reshape(k, -1) ** 2, axis=1) for v in direction.values()))
            direction = {n: v / norm.reshape((k,) + (1,) * (v.ndim - 1)) for n, v in direction.items()}
            parts.append((data, cts, direction))
        cat = lambda arrays: np.concatenate(arrays) if len(arrays) > 1 else arrays[0]  # noqa: E731
        return cls(
            case, dtype,
            data={t.name: cat([p[0][t.name] for p in parts]) for t in case.tensors},
            cts=[cat([p[1][i] for p in parts]) for i in range(len(out_shapes))],
            direction={t.name: cat([p[2][t.name] for p in parts]) for t in diff},
            out_shapes=out_shapes,
            seeds=tuple(seeds),
        )

    def out_layouts(self, n: int | None = None) -> tuple:
        """The layouts of `n` outputs (default: as many as drawn cotangents); a case may
        declare one for all."""
        lays, n = self.case.out_layouts, len(self.out_shapes) if n is None else n
        return lays if len(lays) == n else lays * n

    def for_torch(self, torch, *, dtype: str | None = None, shift: float | None = None, trial: int | None = None) -> "View":
        """The draws as torch tensors (`torch`: the adapter) in `dtype` (default the run's)."""
        return _TorchView(self, torch, dtype or self.dtype, shift, trial)

    def for_jax(self, jax, *, dtype: str | None = None, shift: float | None = None, trial: int | None = None) -> "View":
        """The draws as JAX arrays in JAX's layout (`jax`: the adapter), placed beside the
        run's other arrays (one trial included)."""
        return _JaxView(self, jax, dtype or self.dtype, shift, trial)


class View:
    """The draws in one framework's arrays: `args` (every tensor of the case, in order),
    `cts` and `directions` (the differentiable tensors'); each made when first read, cut in
    numpy so that no framework runs an op to slice or shift it."""

    def __init__(self, inputs: Inputs, adapter, dtype: str, shift: float | None, trial: int | None):
        self.inputs, self.adapter, self.dtype, self.shift, self.trial = inputs, adapter, dtype, shift, trial

    def _cut(self, a):
        return a if self.trial is None else a[self.trial]

    def _place(self, a, kind: str, layout, is_arg: bool):
        raise NotImplementedError

    @cached_property
    def args(self) -> list:
        out, inputs = [], self.inputs
        for t in inputs.case.tensors:
            a = inputs.data[t.name]
            if self.shift is not None and t.differentiable:
                a = a + self.shift * inputs.direction[t.name]
            out.append(self._place(self._cut(a), t.kind, t.layout, True))
        return out

    @cached_property
    def cts(self) -> list:
        return [self._place(self._cut(c), "float", lay, False) for lay, c in zip(self.inputs.out_layouts(), self.inputs.cts)]

    @cached_property
    def directions(self) -> list:
        inputs = self.inputs
        return [
            self._place(self._cut(inputs.direction[t.name]), "float", t.layout, False)
            for t in inputs.case.tensors if t.differentiable
        ]


class _TorchView(View):
    def _place(self, a, kind, layout, is_arg):
        # torch's layout is the draws' own; inputs arrive strided where the case asks.
        contiguous = not (is_arg and self.inputs.case.noncontiguous)
        return self.adapter.from_numpy(a, kind, self.dtype, contiguous=contiguous)


class _JaxView(View):
    def _place(self, a, kind, layout, is_arg):
        if self.trial is None:
            return self.adapter.from_numpy(layout.to_jax(a), kind, self.dtype)
        # One trial: the layout maps arrays with a trial axis, so add one and drop it.
        return self.adapter.from_numpy(layout.to_jax(a[None])[0], kind, self.dtype, batched=False, beside=self.inputs.trials)
