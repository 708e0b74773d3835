"""Non-zero padding modes (reflect, replicate, circular) with a hand-written backward.

Each mode pads by copying input positions: along a padded dim, output position `j` reads input
position `source(j)`, so the forward is a gather and the backward scatters the gradient back,
adding where one input position was copied several times (the rows next to an edge).
"""

from __future__ import annotations

import torch

MODES = ("reflect", "replicate", "circular")


def source(n: int, lo: int, hi: int, mode: str, device=None) -> torch.Tensor:
    """The input position each of the `lo + n + hi` padded positions copies along one dim."""
    i = torch.arange(-lo, n + hi, device=device)
    if mode == "replicate":
        return i.clamp(0, n - 1)
    if mode == "circular":
        return i.remainder(n)
    # reflect: mirrored about the first and last positions, which are not repeated.
    return torch.where(i < 0, -i, torch.where(i >= n, 2 * (n - 1) - i, i))


class PadFunction(torch.autograd.Function):
    """`F.pad(input, pad, mode)` for the last `len(pads)` dims, `pads` one `(lo, hi)` each."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, pads, mode):
        out = input
        for d, (lo, hi) in zip(range(-len(pads), 0), pads):
            out = out.index_select(d, source(out.shape[d], lo, hi, mode, input.device))
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, pads, mode = inputs
        ctx.shape, ctx.pads, ctx.mode = input.shape, pads, mode

    @staticmethod
    def backward(ctx, grad_output):
        g = grad_output
        # The dims in reverse: each scatter undoes the gather that was done last.
        for d, (lo, hi) in reversed(list(zip(range(-len(ctx.pads), 0), ctx.pads))):
            n = ctx.shape[d]
            shape = list(g.shape)
            shape[d] = n
            g = g.new_zeros(shape).index_add(d, source(n, lo, hi, ctx.mode, g.device), g)
        return g, None, None


def pad(input: torch.Tensor, pads: tuple[tuple[int, int], ...], mode: str) -> torch.Tensor:
    """`input` padded in its last `len(pads)` dims by `mode`, with torch's size limits.

    Args:
        input: `(..., *spatial)`.
        pads: one `(lo, hi)` pair per spatial dim, in order (not `F.pad`'s reversed flat list).
        mode: "reflect" (pads below each size), "replicate" or "circular" (pads at most each size).
    """
    if mode not in MODES:
        raise ValueError(f"`padding_mode` (={mode!r}) must be 'zeros' or one of {', '.join(map(repr, MODES))}")
    sizes = tuple(input.shape[-len(pads):])
    for n, (lo, hi) in zip(sizes, pads):
        if mode == "reflect" and max(lo, hi) >= n or mode == "circular" and max(lo, hi) > n:
            bound = "below" if mode == "reflect" else "at most"
            raise ValueError(
                f"`padding` (={pads}) must be {bound} the input's size (spatial {sizes}) with `padding_mode` (={mode!r})"
            )
    return PadFunction.apply(input, tuple(pads), mode)
