"""Whole models: pair the layers of a torch model with those of an NNX model, convert each pair
with its `ParamMap`, and account for every parameter and buffer on both sides.

The torch side is walked with `named_modules()`: the outermost module whose class has a map
is a leaf (its children are its map's business: `MultiheadAttention.out_proj`). The NNX side
is indexed by path in its graph, where an `nnx.Sequential`'s `layers` may be left out, so that
torch `net.0` (an `nn.Sequential`) finds nnx `net.layers.0`; `nn.ModuleList` / `nnx.List`
(`blocks.1`), `nn.ModuleDict` / `nnx.Dict` (`heads.a`) and attributes match by the same name.
A `mapping` `{torch path: nnx path}` rewrites torch paths first (the longest matching prefix).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._core import Arrays, ParamMap, _nnx_flat, _nnx_set, has_param_map, known_maps, param_map


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


@dataclass(frozen=True)
class Leaf:
    """One torch module with a map, and the nnx module it pairs with."""

    torch_path: str
    nnx_path: str
    torch_module: Any
    nnx_module: Any
    pmap: ParamMap

    def torch_name(self, key: str) -> str:
        return _join(self.torch_path, key)

    def nnx_name(self, rel: str) -> str:
        return _join(self.nnx_path, rel)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _at(side: str, path: str) -> str:
    return f"{side} `{path}`" if path else f"the {side} model itself"


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + ".")


def _rel(path: str, prefix: str) -> str:
    return path[len(prefix) + 1:] if prefix else path


def _shape(a) -> tuple[int, ...]:
    return tuple(int(n) for n in a.shape)


def _torch_leaves(model) -> list[tuple[str, Any]]:
    leaves: list[tuple[str, Any]] = []
    for path, module in model.named_modules():
        if not any(_under(path, p) for p, _ in leaves) and has_param_map(module):
            leaves.append((path, module))
    return leaves


def _nnx_index(model) -> dict[str, tuple[str, Any]]:
    """`{path: (exact path, module)}` for every nnx module, under its exact path and under the
    path without the `layers` of each `nnx.Sequential` (exact paths win)."""
    from flax import nnx

    nodes = {path: node for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}
    index = {".".join(map(str, path)): (".".join(map(str, path)), node) for path, node in nodes.items()}
    for path, node in nodes.items():
        short = [str(s) for i, s in enumerate(path) if not (s == "layers" and isinstance(nodes.get(path[:i]), nnx.Sequential))]
        index.setdefault(".".join(short), (".".join(map(str, path)), node))
    return index


def _translate(path: str, mapping: dict[str, str]) -> str:
    prefix = max((p for p in mapping if _under(path, p)), key=len, default=None)
    return path if prefix is None else _join(mapping[prefix], _rel(path, prefix))


@dataclass
class Pairing:
    """The leaves of `torch_model` paired with modules of `nnx_model`, and what did not pair."""

    leaves: list[Leaf]
    problems: list[str]
    unpaired: dict[str, str]  # torch leaf path -> the nnx path looked for

    @property
    def pairs(self) -> dict[str, str]:
        return {leaf.torch_path: leaf.nnx_path for leaf in self.leaves}

    def to_torch(self, arrays: Arrays, grads: bool = False) -> Arrays:
        """nnx arrays (by path) in torch's names and layouts; `grads` uses each map's adjoint."""
        out = {}
        for leaf in self.leaves:
            own = {_rel(p, leaf.nnx_path): a for p, a in arrays.items() if _under(p, leaf.nnx_path)}
            fn = (leaf.pmap.grads_to_torch or leaf.pmap.to_torch) if grads else leaf.pmap.to_torch
            out.update({leaf.torch_name(k): v for k, v in fn(own).items()})
        return out

    def to_nnx(self, arrays: Arrays) -> Arrays:
        """torch arrays (by `state_dict` name) in nnx's paths and layouts."""
        out = {}
        for leaf in self.leaves:
            own = {_rel(k, leaf.torch_path): a for k, a in arrays.items() if _under(k, leaf.torch_path)}
            out.update({leaf.nnx_name(r): v for r, v in leaf.pmap.to_nnx(own).items()})
        return out


def pair_modules(torch_model, nnx_model, mapping: dict[str, str] | None = None) -> Pairing:
    """Pair every torch module that has a weight conversion with an nnx module (see the module
    docstring). A torch module with no nnx module at its path then pairs with the one free nnx
    module whose path ends with its own, or the other way round (torch `cell`, nnx `rnn.cell`
    of an `nnx.RNN`; not by indices alone), if there is exactly one; else it is left in
    `unpaired`."""
    mapping = dict(mapping or {})
    torch_paths = {p for p, _ in torch_model.named_modules()}
    unknown = [p for p in mapping if p not in torch_paths]
    if unknown:
        raise ValueError(f"`mapping` (={mapping}) names torch modules the model does not have: {unknown}")
    index = _nnx_index(nnx_model)
    leaves, problems, taken = [], [], {}

    def add(path, module, exact, node):
        if exact in taken:
            problems.append(f"torch `{taken[exact]}` and torch `{path}` both pair with nnx `{exact}`")
            return
        taken[exact] = path
        try:
            leaves.append(Leaf(path, exact, module, node, param_map(module, node)))
        except ValueError as e:
            problems.append(f"{_at('torch', path)} ({type(module).__name__}) -> {_at('nnx', exact)} ({type(node).__name__}): {e}")

    rest = []
    for path, module in _torch_leaves(torch_model):
        target = _translate(path, mapping)
        if target in index:
            add(path, module, *index[target])
        else:
            rest.append((path, module, target))
    unpaired = {}
    for path, module, target in rest:
        free = {exact: node for exact, node in index.values() if not any(_under(exact, t) or _under(t, exact) for t in taken)}
        found = {exact for key, (exact, _) in index.items() if exact in free and (_ends_with(key, target) or _ends_with(target, key))}
        if len(found) == 1:
            exact = found.pop()
            add(path, module, exact, free[exact])
        else:
            unpaired[path] = target
    return Pairing(leaves, problems, unpaired)


def _ends_with(path: str, tail: str) -> bool:
    """Whether `path` is `tail` under more leading names (`rnn.cell` ends with `cell`); a tail
    of indices alone (`0`) names no module by itself, so it never matches."""
    a, b = path.split("."), tail.split(".")
    return not all(p.isdigit() for p in b) and len(a) > len(b) and a[-len(b):] == b


def match_modules(torch_model, nnx_model, mapping: dict[str, str] | None = None) -> dict[str, str]:
    """`{torch module path: nnx module path}` for every pair a conversion would use."""
    return pair_modules(torch_model, nnx_model, mapping).pairs


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
        inside = [f"{_rel(k, prefix)} {s}" for k, s in shapes.items() if _under(k, prefix)]
        return ", ".join(inside) or "nothing"

    def _why_torch(self, key: str) -> str:
        for leaf in self.pairing.leaves:
            if _under(key, leaf.torch_path):
                return f"{_at('nnx', leaf.nnx_path)} ({type(leaf.nnx_module).__name__}) has nothing that maps to it; it holds: {self.holds('nnx', leaf.nnx_path)}"
        for path, target in self.pairing.unpaired.items():
            if _under(key, path):
                return f"no nnx module at `{target}` to pair with torch `{path}`; pass `mapping`"
        parent = key.rpartition(".")[0]
        module = self.torch_model.get_submodule(parent)
        return f"no weight conversion for {_at('torch', parent)} ({type(module).__name__}); known: {known_maps()}"

    def _why_nnx(self, path: str) -> str:
        for leaf in self.pairing.leaves:
            if _under(path, leaf.nnx_path):
                return f"{_at('torch', leaf.torch_path)} ({type(leaf.torch_module).__name__}) has nothing that maps to it; it holds: {self.holds('torch', leaf.torch_path)}"
        return f"no torch module pairs with {_at('nnx', path.rpartition('.')[0])}"

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
            path = _join(prefix, rel)
            head = f"{other} `{source(rel)}` -> {to} `{path}`"
            if path not in shapes:
                self.problems.append(f"{head} {_shape(value)}: the {to} model has no such entry; {_at(to, prefix)} holds: {self.holds(to, prefix)}")
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


def _torch_arrays(state_dict) -> Arrays:
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
    arrays = _torch_arrays(state_dict)
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
        own = {_rel(k, leaf.torch_path): a for k, a in arrays.items() if _under(k, leaf.torch_path) and k not in acc.torch_done}
        try:
            made = leaf.pmap.to_nnx(own)
            back = set(leaf.pmap.to_torch(made)) | set(leaf.pmap.torch_only)
        except (ValueError, KeyError) as e:
            acc.problems.append(f"torch `{leaf.torch_path}` ({type(leaf.torch_module).__name__}) -> nnx `{leaf.nnx_path}`: {e}")
            acc.torch_done |= {leaf.torch_name(k) for k in own}
            acc.nnx_done |= {p for p in acc.nnx_shapes if _under(p, leaf.nnx_path)}
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
        own = {_rel(p, leaf.nnx_path): a for p, a in nnx_arrays.items() if _under(p, leaf.nnx_path)}
        try:
            made = leaf.pmap.to_torch(own)
            back = set(leaf.pmap.to_nnx(made))
        except (ValueError, KeyError) as e:
            acc.problems.append(f"nnx `{leaf.nnx_path}` ({type(leaf.nnx_module).__name__}) -> torch `{leaf.torch_path}`: {e}")
            acc.nnx_done |= {leaf.nnx_name(r) for r in own}
            acc.torch_done |= {k for k in own_state if _under(k, leaf.torch_path)}
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
