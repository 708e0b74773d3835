"""The torch side's rounding model, for a torch function checked without a JAX twin.

The JAX adapter measures how far rounding may move each element by evaluating the jaxpr with
every intermediate perturbed (`jax_rounding`). A torch function alone has no jaxpr; here every
aten op that runs (forward, backward and double backward alike) passes through a
`TorchDispatchMode` that multiplies its floating results by `1 + s xi`, `xi` uniform in
[-1, 1] per element. The change of each result, scaled from `s` to the dtype's unit roundoff,
is its first-order rounding error for that draw; the root-mean-square over draws is the spread
that `compare.allowance` takes, as from the JAX model.

What it approximates: a sum's running total is rounded once per term; here the terms of a
reduction, matrix product or convolution are perturbed through their first operand (each
element once, at the accumulation's unit roundoff, `compare.sum_order` times over for the
running total's roundings), which gives the sum's error its size but draws it per operand
element rather than per term.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from ..compare import sum_order

# The perturbation's size: small enough that second-order terms (s relative) vanish beside the
# first, large enough that float64's own rounding (2^-53 / s relative) does not show.
SCALE = 2.0**-20

# Ops whose results are exact: they move, select or compare values without rounding them.
EXACT = frozenset({
    "abs", "neg", "sign", "sgn", "view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t",
    "squeeze", "unsqueeze", "select", "slice", "index", "index_select", "gather", "cat", "stack", "split",
    "split_with_sizes", "unbind", "clone", "detach", "alias", "_to_copy", "to", "copy", "contiguous",
    "where", "masked_fill", "maximum", "minimum", "max", "min", "amax", "amin", "clamp", "clamp_min",
    "clamp_max", "relu", "floor", "ceil", "round", "trunc", "eq", "ne", "lt", "le", "gt", "ge", "isfinite",
    "isnan", "logical_not", "logical_and", "logical_or", "zeros_like", "ones_like", "empty_like", "full_like",
    "new_zeros", "new_ones", "new_empty", "zeros", "ones", "empty", "full", "fill", "scalar_tensor",
    "lift_fresh", "constant_pad_nd", "flip", "roll", "diagonal", "as_strided", "randn_like", "rand_like",
})

# Sums: which argument holds the terms.
SUMS = {"sum": 0, "mean": 0, "mm": 0, "bmm": 0, "matmul": 0, "mv": 0, "dot": 0, "addmm": 1, "baddbmm": 1,
        "convolution": 0, "cumsum": 0, "einsum": 1, "linear": 0}


def _terms(name: str, args) -> int:
    """How many terms each result of the sum `name(*args)` adds up, at most (1 where unknown)."""
    def dims(x):
        return x.shape if isinstance(x, torch.Tensor) else ()

    a = dims(args[SUMS[name]])
    if name in ("sum", "mean"):
        axes = args[1] if len(args) > 1 and isinstance(args[1], (int, list, tuple)) else None
        axes = [axes] if isinstance(axes, int) else axes or range(len(a))  # none or []: all
        return math.prod(a[d] for d in axes) if a else 1
    if name == "cumsum":
        return a[args[1]] if a else 1
    if name == "convolution" and len(args) > 8:  # (input, weight, bias, stride, ..., transposed, _, groups)
        w, transposed, groups = dims(args[1]), args[6], args[8]
        return (w[0] // groups if transposed else w[1]) * math.prod(w[2:])
    # Products (einsum, linear and matmul reach the mode as mm / bmm): the first operand's last dimension.
    return a[-1] if a else 1


class _Perturbed(TorchDispatchMode):
    """Every floating result `z` becomes `z (1 + scale xi)`, the terms of sums `t (1 + acc xi)`;
    `z` of size below `smallest` (subnormal in the dtype modelled) moves as `smallest` would."""

    def __init__(self, scale: float, acc: float, smallest: tuple[float, float], seed: int):
        super().__init__()
        self.scale, self.acc = scale, acc
        self.smallest = smallest
        self.generator = torch.Generator().manual_seed(seed)

    def _perturb(self, z, scale, smallest):
        # A ZeroTensor (autograd's known zero, as a double backward makes) rounds nothing, and
        # arithmetic on it here crashes the process.
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z._is_zerotensor():
            return z
        xi = torch.rand(z.shape, generator=self.generator, dtype=torch.float64).mul_(2).sub_(1).to(z.device, z.dtype)
        # An infinite value (a masked logit) is not rounded: it stays where it is; an exact zero
        # not at all.
        size = torch.sign(z) * torch.clamp_min(torch.abs(z), smallest)
        return z + torch.where(torch.isfinite(z), size, torch.zeros_like(z)) * (scale * xi)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SUMS and len(args) > SUMS[name]:
            args = list(args)
            acc = self.acc * sum_order(_terms(name, args))
            args[SUMS[name]] = self._perturb(args[SUMS[name]], acc, self.smallest[1])
        out = func(*args, **(kwargs or {}))
        if name in EXACT or name.endswith("_"):  # in place: the result is an argument, left alone
            return out
        return tree_map(lambda z: self._perturb(z, self.scale, self.smallest[0]), out)


def spread(compute, units: tuple[float, float, float, float], draws: int):
    """Per element of `compute()` (a list of numpy arrays or None, recomputed per draw, in
    float64): the root-mean-square over `draws` of its first-order rounding error, each result
    rounded with unit roundoff `units[0]` and each sum's terms with `units[1]`, their smallest
    normal numbers `units[2:]` (`compare.rounding_units`)."""
    base = compute()
    total = [None if b is None else np.zeros_like(b) for b in base]
    for d in range(draws):
        with _Perturbed(SCALE, SCALE * units[1] / units[0], units[2:], 0x5EED + d):
            moved = compute()
        for i, (b, m) in enumerate(zip(base, moved)):
            if b is not None:
                total[i] += np.square((m - b) * (units[0] / SCALE))
    return [None if t is None else np.sqrt(t / draws) for t in total]
