"""Mutant records, their registry, and helpers that rebuild a layer with another backward."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

from ..registry import Case, get

GRAD_CHECKS = ("grad-shape", "grad-contract", "grad", "grad-module", "grad-autodiff", "finite-diff", "hvp", "hvp-autodiff")
FORWARD_CHECKS = ("forward", "forward-reference", "forward-fwd-rule")


@dataclass(frozen=True)
class Mutant:
    """A realistic bug planted in one side of one case.

    Attributes:
        name: unique, e.g. "linear/weight-grad-transposed".
        case: the registered case it mutates.
        side: "torch" or "jax": whose custom function is replaced.
        fn: the replacement for `case.torch_fn` or `case.jax_fn` (same signature).
        expect: checks that one would expect to catch it; the mutant must fail at least one,
            and no check outside `expect` and the gradient checks.
        description: the bug in words.
    """

    name: str
    case: str
    side: str
    fn: Callable
    expect: tuple[str, ...]
    description: str

    def apply(self) -> Case:
        """The case with the bug planted, at its declared shapes only.

        `fn` closes over the declared case's options (stride, padding, ...), while a shape
        bucket is rebuilt from `Shapes.build` with other options and the unmutated functions:
        keeping the buckets would run the correct layer under the mutant's name.
        """
        case = get(self.case)
        field = {"torch": "torch_fn", "jax": "jax_fn"}[self.side]
        return case.replace(**{field: self.fn}, selector=f"mutants --only {self.name}", shapes=None)


_MUTANTS: dict[str, Mutant] = {}


def register_mutant(m: Mutant) -> Mutant:
    if m.name in _MUTANTS:
        raise ValueError(f"Mutant {m.name!r} is registered twice")
    if m.side not in ("torch", "jax"):
        raise ValueError(f"`side` (={m.side!r}) must be 'torch' or 'jax'")
    _MUTANTS[m.name] = m
    return m


def all_mutants() -> list[Mutant]:
    from .. import mutants

    for info in sorted(pkgutil.iter_modules(mutants.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{mutants.__name__}.{info.name}")
    return list(_MUTANTS.values())


def torch_with_backward(function_cls, backward: Callable, name: str | None = None):
    """A subclass of `function_cls` (an autograd.Function) with `backward` replaced."""
    return type(name or f"Mutant{function_cls.__name__}", (function_cls,), {"backward": staticmethod(backward)})


def jax_with_bwd(primal: Callable, fwd: Callable, bwd: Callable, nondiff_argnums: tuple[int, ...] = ()):
    """A fresh `jax.custom_vjp` of `primal` with the rules `fwd` and (broken) `bwd`."""
    import jax

    f = jax.custom_vjp(primal, nondiff_argnums=nondiff_argnums)
    f.defvjp(fwd, bwd)
    return f
