"""Whole models: convert each pair of layers (`_pair.pair_modules`) with its `ParamMap`, and
account for every parameter and buffer on both sides."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._core import Arrays, ParamMap, _nnx_flat, _nnx_set, known_maps
from ._pair import Leaf, Pairing, at, join, pair_modules, relative, under


class ConversionError(ValueError):
    """A parameter or buffer that a strict conversion cannot account for; `problems` lists each."""

    def __init__(self, direction: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{direction}: {len(problems)} problem{'s' * (len(problems) > 1)} (strict=False converts the rest)\n{lines}")


class ConversionWarning(UserWarning):
    """What a `strict=False` conversion skipped."""


@dataclass
class Conversion:
    """What a conversion did: `pairs` (torch module path -> nnx module path), `written` (the
    paths written, on the receiving side) and `skipped` (empty unless `strict=False`)."""

    pairs: dict[str, str]
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _shape(a) -> tuple[int, ...]:
    return tuple(int(n) for n in a.shape)


def _sources(pmap: ParamMap, arrays: Arrays) -> dict[str, str]:
    """`{nnx rel path: torch key}` for outputs that one torch entry makes on its own (a map that
    needs several, as LSTM's, names none: messages then name the module)."""
    out = {}
    for k, a in arrays.items():
        try:
            made = pmap.to_nnx({k: a})
        except Exception:  # the map needs other entries too
            continue
        for rel in made:
            out.setdefault(rel, k)
    return out


class _Accounts:
    """Both sides' entries, `{path: shape}`, and the reason each unaccounted one gets."""

    def __init__(self, pairing: Pairing, torch_shapes: dict, nnx_shapes: dict, torch_model, nnx_model):
        self.pairing, self.torch_shapes, self.nnx_shapes = pairing, torch_shapes, nnx_shapes
        self.torch_model, self.nnx_model = torch_model, nnx_model
        self.torch_done: set[str] = set()
        self.nnx_done: set[str] = set()
        self.problems: list[str] = list(pairing.problems)

    def holds(self, side: str, prefix: str) -> str:
        shapes = self.torch_shapes if side == "torch" else self.nnx_shapes
        inside = [f"{relative(k, prefix)} {s}" for k, s in shapes.items() if under(k, prefix)]
        return ", ".join(inside) or "nothing"

    def _why_torch(self, key: str) -> str:
        for leaf in self.pairing.leaves:
            if under(key, leaf.torch_path):
                return f"{at('nnx', leaf.nnx_path)} ({type(leaf.nnx_module).__name__}) has nothing that maps to it; it holds: {self.holds('nnx', leaf.nnx_path)}"
        for path, target in self.pairing.unpaired.items():
            if under(key, path):
                return f"no nnx module at `{target}` to pair with torch `{path}`; pass `mapping`"
        parent = key.rpartition(".")[0]
        module = self.torch_model.get_submodule(parent)
        return f"no weight conversion for {at('torch', parent)} ({type(module).__name__}); known: {known_maps()}"

    def _why_nnx(self, path: str) -> str:
        for leaf in self.pairing.leaves:
            if under(path, leaf.nnx_path):
                return f"{at('torch', leaf.torch_path)} ({type(leaf.torch_module).__name__}) has nothing that maps to it; it holds: {self.holds('torch', leaf.torch_path)}"
        return f"no torch module pairs with {at('nnx', path.rpartition('.')[0])}"

    def take(self, to: str, leaf: Leaf, made: Arrays, source) -> Arrays:
        """The entries of `made` (relative to `leaf` on side `to`, each converted from
        `source(rel)`) that the `to` model holds at that shape, by full path; a problem for
        each other one."""
        shapes, done, prefix = (
            (self.nnx_shapes, self.nnx_done, leaf.nnx_path) if to == "nnx" else (self.torch_shapes, self.torch_done, leaf.torch_path)
        )
        other = "torch" if to == "nnx" else "nnx"
        out = {}
        for rel, value in made.items():
            path = join(prefix, rel)
            head = f"{other} `{source(rel)}` -> {to} `{path}`"
            if path not in shapes:
                self.problems.append(f"{head} {_shape(value)}: the {to} model has no such entry; {at(to, prefix)} holds: {self.holds(to, prefix)}")
                continue
            done.add(path)
            if _shape(value) != shapes[path]:
                self.problems.append(f"{head}: the {other} side gives {_shape(value)}, the {to} model holds {shapes[path]}")
                continue
            out[path] = value
        return out

    def finish(self) -> list[str]:
        for key in sorted(set(self.torch_shapes) - self.torch_done):
            self.problems.append(f"torch `{key}` {self.torch_shapes[key]} has no counterpart in the nnx model: {self._why_torch(key)}")
        for path in sorted(set(self.nnx_shapes) - self.nnx_done):
            self.problems.append(f"nnx `{path}` {self.nnx_shapes[path]} has no counterpart in the torch model: {self._why_nnx(path)}")
        return self.problems


def _report(direction: str, problems: list[str], strict: bool) -> list[str]:
    if problems and strict:
        raise ConversionError(direction, problems)
    if problems:
        warnings.warn(ConversionWarning(f"{direction} skipped {len(problems)}:\n" + "\n".join(f"  - {p}" for p in problems)), stacklevel=3)
    return problems


def state_arrays(state_dict) -> Arrays:
    """A `state_dict` as numpy on the CPU: floats in float64 (exactly), the rest as they are."""
    return {k: v.detach().cpu().double().numpy() if v.is_floating_point() else v.detach().cpu().numpy() for k, v in state_dict.items()}


def state_dict_to_nnx(state_dict: dict, torch_model, nnx_model, *, mapping: dict[str, str] | None = None, strict: bool = True) -> Conversion:
    """Load a torch `state_dict` (of a model built like `torch_model`) into `nnx_model`, in place.

    Every entry of `state_dict` and every nnx variable (but RNG state) must be accounted for,
    with matching shapes: otherwise a `ConversionError` names each one, on both sides. With
    `strict=False` the rest is converted and what was skipped is warned about and returned.
    Each nnx variable keeps its dtype.
    """
    pairing = pair_modules(torch_model, nnx_model, mapping)
    template = {k: _shape(v) for k, v in torch_model.state_dict().items()}
    arrays = state_arrays(state_dict)
    acc = _Accounts(pairing, template, {k: _shape(v) for k, v in _nnx_flat(nnx_model).items()}, torch_model, nnx_model)
    for key in sorted(set(arrays) - set(template)):
        acc.problems.append(f"state_dict entry `{key}` {_shape(arrays[key])} is not in the torch model ({type(torch_model).__name__})")
    for key in sorted(set(template) - set(arrays)):
        acc.problems.append(f"torch `{key}` {template[key]} is missing from the state_dict")
        acc.torch_done.add(key)
    for key in sorted(set(template) & set(arrays)):
        if _shape(arrays[key]) != template[key]:
            acc.problems.append(f"state_dict entry `{key}` has shape {_shape(arrays[key])}, the torch model {template[key]}")
            acc.torch_done.add(key)
    values = {}
    for leaf in pairing.leaves:
        own = {relative(k, leaf.torch_path): a for k, a in arrays.items() if under(k, leaf.torch_path) and k not in acc.torch_done}
        try:
            made = leaf.pmap.to_nnx(own)
            back = set(leaf.pmap.to_torch(made)) | set(leaf.pmap.torch_only)
        except (ValueError, KeyError) as e:
            acc.problems.append(f"{at('torch', leaf.torch_path)} ({type(leaf.torch_module).__name__}) -> {at('nnx', leaf.nnx_path)}: {e}")
            acc.torch_done |= {leaf.torch_name(k) for k in own}
            acc.nnx_done |= {p for p in acc.nnx_shapes if under(p, leaf.nnx_path)}
            continue
        acc.torch_done |= {leaf.torch_name(k) for k in own if k in back}
        sources = _sources(leaf.pmap, own)
        values.update(acc.take("nnx", leaf, made, lambda rel: leaf.torch_name(sources.get(rel, ""))))
    skipped = _report("torch -> nnx", acc.finish(), strict)
    for path, value in values.items():
        _nnx_set(nnx_model, path, value)
    return Conversion(pairing.pairs, sorted(values), skipped)


def torch_to_nnx(torch_model, nnx_model, *, mapping: dict[str, str] | None = None, strict: bool = True) -> Conversion:
    """Copy `torch_model`'s parameters and buffers into `nnx_model` (in place); see `state_dict_to_nnx`."""
    return state_dict_to_nnx(torch_model.state_dict(), torch_model, nnx_model, mapping=mapping, strict=strict)


def nnx_to_state_dict(nnx_model, torch_model, *, mapping: dict[str, str] | None = None, strict: bool = True) -> tuple[dict, Conversion]:
    """`nnx_model`'s weights as a `state_dict` of `torch_model` (in its dtypes and devices), and
    the `Conversion`. Entries that the nnx model does not give (`torch_only`, or skipped with
    `strict=False`) are `torch_model`'s own."""
    import torch

    pairing = pair_modules(torch_model, nnx_model, mapping)
    own_state = torch_model.state_dict()
    nnx_arrays = _nnx_flat(nnx_model)
    acc = _Accounts(pairing, {k: _shape(v) for k, v in own_state.items()}, {k: _shape(v) for k, v in nnx_arrays.items()}, torch_model, nnx_model)
    values = {}
    for leaf in pairing.leaves:
        own = {relative(p, leaf.nnx_path): a for p, a in nnx_arrays.items() if under(p, leaf.nnx_path)}
        try:
            made = leaf.pmap.to_torch(own)
            back = set(leaf.pmap.to_nnx(made))
        except (ValueError, KeyError) as e:
            acc.problems.append(f"{at('nnx', leaf.nnx_path)} ({type(leaf.nnx_module).__name__}) -> {at('torch', leaf.torch_path)}: {e}")
            acc.nnx_done |= {leaf.nnx_name(r) for r in own}
            acc.torch_done |= {k for k in own_state if under(k, leaf.torch_path)}
            continue
        acc.nnx_done |= {leaf.nnx_name(r) for r in own if r in back}
        acc.torch_done |= {leaf.torch_name(k) for k in leaf.pmap.torch_only if leaf.torch_name(k) in own_state}
        values.update(acc.take("torch", leaf, made, lambda key: leaf.nnx_path))
    skipped = _report("nnx -> torch", acc.finish(), strict)
    state = dict(own_state)
    for name, value in values.items():
        # A layout built from views (np.flip) has negative strides, which torch refuses.
        state[name] = torch.as_tensor(np.ascontiguousarray(value), dtype=own_state[name].dtype, device=own_state[name].device)
    return state, Conversion(pairing.pairs, sorted(values), skipped)


def nnx_to_torch(nnx_model, torch_model, *, mapping: dict[str, str] | None = None, strict: bool = True) -> Conversion:
    """Copy `nnx_model`'s weights into `torch_model` (in place, keeping its dtypes); strict as
    `state_dict_to_nnx` is, and loaded with `load_state_dict(strict=True)`."""
    state, conversion = nnx_to_state_dict(nnx_model, torch_model, mapping=mapping, strict=strict)
    torch_model.load_state_dict(state)
    return conversion
