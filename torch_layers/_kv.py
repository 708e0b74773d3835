"""The row `torch.nn.MultiheadAttention` appends to its projected keys and values: a learned
bias (`add_bias_kv`) or zeros (`add_zero_attn`), with a hand-written backward."""

from __future__ import annotations

import torch


class AppendRowFunction(torch.autograd.Function):
    """`cat([x, row repeated over the batch])` along dim 0, for `x (S, N, E)` and `row` of `E`
    elements in any shape whose leading dims are 1 (`(E,)`, `(1, 1, E)`: what the built-in's
    `row.repeat(1, N, 1)` takes), or None for a row of zeros. The result is `(S + 1, N, E)`.

    Backward: `x` gets the first `S` rows of the gradient; `row` the last row summed over the
    batch, since one row was repeated for every batch element.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, row):
        tail = x.new_zeros((1, *x.shape[1:])) if row is None else row.reshape(1, 1, -1).expand(1, *x.shape[1:])
        return torch.cat([x, tail])

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, row = inputs
        ctx.row_shape = None if row is None else row.shape

    @staticmethod
    def backward(ctx, grad_output):
        grad_x = grad_row = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output[:-1]
        if ctx.row_shape is not None and ctx.needs_input_grad[1]:
            grad_row = grad_output[-1].sum(0).reshape(ctx.row_shape)
        return grad_x, grad_row


def append_row(x: torch.Tensor, row: torch.Tensor | None, name: str) -> torch.Tensor:
    """`x (S, N, E)` with `row` (None: zeros) appended as key/value `S + 1`; `name` for errors."""
    E = x.shape[-1]
    if row is not None and (row.numel() != E or row.shape[-1:] != (E,) or any(n != 1 for n in row.shape[:-1])):
        raise ValueError(f"`{name}` (shape {tuple(row.shape)}) must hold `embed_dim` (={E}) values, as (1, 1, {E}) or ({E},)")
    if row is not None and row.dtype != x.dtype:
        raise ValueError(f"`{name}` dtype (={row.dtype}) must be the query's (={x.dtype})")
    return AppendRowFunction.apply(x, row)
