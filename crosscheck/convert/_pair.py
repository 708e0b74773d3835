"""Pairing: which torch module's weights go to which nnx module.

The torch side is walked with `named_modules()`: the outermost module whose class has a map
is a leaf (its children are its map's business: `MultiheadAttention.out_proj`). The NNX side
is indexed by path in its graph, where an `nnx.Sequential`'s `layers` may be left out, so that
torch `net.0` (an `nn.Sequential`) finds nnx `net.layers.0`; `nn.ModuleList` / `nnx.List`
(`blocks.1`), `nn.ModuleDict` / `nnx.Dict` (`heads.a`) and attributes match by the same name.
A `mapping` `{torch path: nnx path}` rewrites torch paths first (the longest matching prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._core import Arrays, ParamMap, has_param_map, param_map


@dataclass(frozen=True)
class Leaf:
    """One torch module with a map, and the nnx module it pairs with."""

    torch_path: str
    nnx_path: str
    torch_module: Any
    nnx_module: Any
    pmap: ParamMap

    def torch_name(self, key: str) -> str:
        return join(self.torch_path, key)

    def nnx_name(self, rel: str) -> str:
        return join(self.nnx_path, rel)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def at(side: str, path: str) -> str:
    return f"{side} `{path}`" if path else f"the {side} model itself"


def under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + ".")


def relative(path: str, prefix: str) -> str:
    return path[len(prefix) + 1:] if prefix else path


def _torch_leaves(model) -> list[tuple[str, Any]]:
    leaves: list[tuple[str, Any]] = []
    for path, module in model.named_modules():
        if not any(under(path, p) for p, _ in leaves) and has_param_map(module):
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
    prefix = max((p for p in mapping if under(path, p)), key=len, default=None)
    return path if prefix is None else join(mapping[prefix], relative(path, prefix))


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
            own = {relative(p, leaf.nnx_path): a for p, a in arrays.items() if under(p, leaf.nnx_path)}
            fn = (leaf.pmap.grads_to_torch or leaf.pmap.to_torch) if grads else leaf.pmap.to_torch
            out.update({leaf.torch_name(k): v for k, v in fn(own).items()})
        return out

    def to_nnx(self, arrays: Arrays) -> Arrays:
        """torch arrays (by `state_dict` name) in nnx's paths and layouts."""
        out = {}
        for leaf in self.leaves:
            own = {relative(k, leaf.torch_path): a for k, a in arrays.items() if under(k, leaf.torch_path)}
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
            problems.append(f"{at('torch', path)} ({type(module).__name__}) -> {at('nnx', exact)} ({type(node).__name__}): {e}")

    rest = []
    for path, module in _torch_leaves(torch_model):
        target = _translate(path, mapping)
        if target in index:
            add(path, module, *index[target])
        else:
            rest.append((path, module, target))
    unpaired = {}
    for path, module, target in rest:
        free = {exact: node for exact, node in index.values() if not any(under(exact, t) or under(t, exact) for t in taken)}
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
