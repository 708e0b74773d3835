"""The case registry: every layer under check is described here as data.

A case names its inputs and parameters (shapes in torch's layout, how to draw them, how they
map into JAX's layout), four forward functions (custom and reference, per framework) and the
modules that users run. The registry is the single source for the CLI, pytest and reports.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import draw as draws
from .layout import IDENTITY, Layout

DTYPES = ("float64", "float32", "bfloat16", "float16")
LOW_PRECISION = ("bfloat16", "float16")


@dataclass(frozen=True)
class Tensor:
    """One input or parameter of a case.

    Attributes:
        name: the name in messages ("weight"); for parameters, the `nn.Module` attribute.
        shape: shape in torch's layout, without the trial axis.
        kind: "float" (cast to the run's dtype), "int" or "bool" (kept as is).
        differentiable: whether gradients are taken and checked.
        draw: `draw(rng, (trials, *shape)) -> np.ndarray`; standard normal by default.
        layout: how the array maps into JAX's layout.
        jax_name: for parameters, the attribute path in the `nnx.Module` ("kernel").
            A parameter that is not differentiable is module state (a buffer, batch stats):
            loaded into both modules, never differentiated.
        keyword: for inputs, pass it to the modules by keyword (`module(x, mask=mask)`)
            rather than by position.
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "float"
    differentiable: bool = True
    draw: draws.Draw = draws.normal()
    layout: Layout = IDENTITY
    jax_name: str | None = None
    keyword: bool = False

    def __post_init__(self):
        if self.kind not in ("float", "int", "bool"):
            raise ValueError(f"`kind` (={self.kind!r}) must be 'float', 'int' or 'bool'")
        if self.differentiable and self.kind != "float":
            raise ValueError(f"`{self.name}` is differentiable but of kind {self.kind!r}")


@dataclass(frozen=True)
class Shapes:
    """The shapes and options a case covers beyond the one it declares.

    `build(**dims)` returns the case at one point of the space; `ranges` maps each keyword to
    the values it may take (a `range` or a tuple), each chosen independently, so `build` must
    turn any combination into a valid case (derive dependent sizes inside it: a spatial size
    as the kernel's extent plus a drawn excess, channels as groups times a drawn count).
    """

    build: Callable[..., "Case"]
    ranges: dict[str, Sequence[Any]]

    def __post_init__(self):
        empty = [k for k, v in self.ranges.items() if len(v) == 0]
        if empty:
            raise ValueError(f"`ranges` of {', '.join(empty)} are empty")

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        return {k: v[int(rng.integers(len(v)))] for k, v in self.ranges.items()}


@dataclass(frozen=True)
class Case:
    """One layer configuration checked across frameworks.

    The four functions take `(*inputs, *params)` as arrays in their framework's layout and
    return an array or a tuple of arrays. `torch_fn`/`jax_fn` are the custom layers;
    `torch_ref`/`jax_ref` compute the same thing from the frameworks' standard ops.
    `torch_module(dtype, device)` and `jax_module(dtype)` build the user-facing modules; the
    harness loads the drawn parameters into them and calls `module(*inputs)`, or, for the nnx
    module, `jax_call(module, *inputs)` where given.
    """

    name: str
    family: str
    inputs: tuple[Tensor, ...]
    torch_fn: Callable[..., Any]
    torch_ref: Callable[..., Any]
    jax_fn: Callable[..., Any]
    jax_ref: Callable[..., Any]
    params: tuple[Tensor, ...] = ()
    torch_module: Callable[..., Any] | None = None
    jax_module: Callable[..., Any] | None = None
    # How the harness calls the nnx module, where it takes the inputs otherwise than torch's
    # module does: `jax_call(module, *inputs, **keywords)`, a module-level function or a
    # `functools.partial` of one (the program cache names the module's programs by it), so
    # that the module itself is the library's own and pickles by reference.
    jax_call: Callable[..., Any] | None = None
    out_layouts: tuple[Layout, ...] = (IDENTITY,)
    dtypes: tuple[str, ...] = DTYPES
    # False where the layer's backward is not itself differentiable by design.
    second_order: bool = True
    description: str = ""
    # How parameters move into the nnx module (`crosscheck.convert.ParamMap`); by default
    # each parameter goes to its `jax_name` through its `layout`.
    param_map: Any = None
    # False where a case cannot run under the transform tests (tests/test_transforms.py); say why.
    transforms: bool = True
    # Feed torch strided (non-contiguous) views of every input, as a transposed tensor would
    # arrive: a backward that calls `.view` on its inputs or gradients fails here.
    noncontiguous: bool = False
    # The CLI words that select this case; mutated cases point at `mutants --only NAME`.
    selector: str = ""
    # Further shape buckets drawn from these ranges (`--shapes N` runs N buckets in all).
    shapes: Shapes | None = None
    # The module outside this repository whose import registers the case (set by `register`):
    # `Reproduce:` lines and `--jobs` shards import it with `--cases`.
    origin: str = ""
    # The static arguments that the functions close over, `((side, args), ...)` (a conv's
    # stride, padding, ...), for mutants that rebuild the same calls with a planted bug.
    config: tuple = ()

    def module_param_map(self):
        if self.param_map is not None:
            return self.param_map
        from .convert import per_tensor

        return per_tensor(*((t.name, t.jax_name or t.name, t.layout) for t in self.params))

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return self.inputs + self.params

    def replace(self, **changes) -> "Case":
        return dataclasses.replace(self, **changes)


def buckets(case: Case, n: int) -> list[tuple[str, Case]]:
    """The case at its declared shapes, then up to `n - 1` distinct points drawn from
    `case.shapes`, each labelled with its dimensions.

    Bucket k depends only on the case's name and k (not on the seed), so every seed of a soak
    runs on the same shapes, batched, and `--shapes N` repeats the same buckets on any machine.
    """
    out = [("", case)]
    if case.shapes is None or n <= 1:
        return out
    seen = set()
    for k in range(1, n):
        rng = np.random.default_rng([zlib.crc32(case.name.encode()), k])
        for _ in range(20):  # small spaces run out of fresh points: stop rather than repeat
            dims = case.shapes.draw(rng)
            key = tuple(sorted(dims.items()))
            if key not in seen:
                break
        else:
            break
        seen.add(key)
        built = case.shapes.build(**dims)
        label = f"shape bucket {k}: " + ", ".join(f"{a}={b}" for a, b in dims.items())
        out.append((label, built.replace(name=case.name, family=case.family, selector=case.selector, origin=case.origin, shapes=None)))
    return out


_REGISTRY: dict[str, Case] = {}


def register(case: Case, build: Callable[..., Case] | None = None, ranges: dict[str, Sequence[Any]] | None = None) -> Case:
    """Add `case` to the registry; with `build` and `ranges`, as its `Shapes` (see there).
    A case registered by a module outside this repository remembers it (`Case.origin`)."""
    from .plugins import origin

    if build is not None:
        case = case.replace(shapes=Shapes(build, ranges or {}))
    if not case.origin:
        case = case.replace(origin=origin())
    if case.name in _REGISTRY:
        raise ValueError(f"Case {case.name!r} is registered twice")
    names = [t.name for t in case.tensors]
    if len(set(names)) != len(names):
        raise ValueError(f"Case {case.name!r} has repeated tensor names: {names}")
    _REGISTRY[case.name] = case
    return case


def _load() -> None:
    from . import cases  # noqa: F401  (registers on import)
    from .plugins import load_entry_points

    load_entry_points()


def all_cases() -> list[Case]:
    _load()
    return list(_REGISTRY.values())


def families() -> list[str]:
    return sorted({c.family for c in all_cases()})


def select(names: list[str] | None) -> list[Case]:
    """Cases whose name or family is in `names` (all when empty), in registry order."""
    cases = all_cases()
    if not names:
        return cases
    known = {c.name for c in cases} | {c.family for c in cases}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"Unknown layer: {', '.join(map(repr, unknown))}. Valid names: {', '.join(sorted(known))}"
        )
    return [c for c in cases if c.name in names or c.family in names]


def get(name: str) -> Case:
    _load()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown case: {name!r}. Valid names: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
