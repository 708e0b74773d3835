"""Recurrent cells (LSTM, GRU), one time step, with hand-written backward passes.

Weights keep torch's layout: `w_ih (G*H, in)` and `w_hh (G*H, H)` stack the G gate blocks
along rows (LSTM: i, f, g, o; GRU: r, z, n). The backward recomputes the gates from the
saved inputs rather than saving them: gates computed inside `forward` are cut off from the
inputs, and double backward has to reach the inputs through them.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _affine(x, w, b):
    y = torch.matmul(x, w.mT)
    return y if b is None else y + b


def _rows(a: torch.Tensor, n: int) -> torch.Tensor:
    """Leading batch dims (none, one or many) flattened into one row axis."""
    return a.reshape(-1, n)


def _param_grads(ctx, d_ih, d_hh, x, h, w_ih, w_hh, first: int):
    """Gradients of `w_ih, w_hh, b_ih, b_hh` (inputs `first..first+3`) from the gate gradients.

    `d_ih` and `d_hh` are the gradients of `x W_ih^T + b_ih` and of `h W_hh^T + b_hh`, each
    `(..., G*H)`; they differ only for the GRU, where the `n` block of the latter is scaled by r.
    """
    need = ctx.needs_input_grad
    gw_ih = gw_hh = gb_ih = gb_hh = None
    d_ih2, d_hh2 = _rows(d_ih, w_ih.shape[0]), _rows(d_hh, w_hh.shape[0])
    if need[first]:
        gw_ih = torch.matmul(d_ih2.mT, _rows(x, w_ih.shape[1]))
    if need[first + 1]:
        gw_hh = torch.matmul(d_hh2.mT, _rows(h, w_hh.shape[1]))
    if ctx.has_b_ih and need[first + 2]:
        gb_ih = d_ih2.sum(0)
    if ctx.has_b_hh and need[first + 3]:
        gb_hh = d_hh2.sum(0)
    return gw_ih, gw_hh, gb_ih, gb_hh


# -- LSTM -------------------------------------------------------------------------------------


def _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh):
    """Activated gates `i, f, g, o`, each `(..., H)`."""
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    ai, af, ag, ao = a.chunk(4, dim=-1)
    return torch.sigmoid(ai), torch.sigmoid(af), torch.tanh(ag), torch.sigmoid(ao)


def _lstm_dgates(i, f, g, o, c, tc, grad_h, grad_c):
    """Gradient of the pre-activation gates `(..., 4H)` and of `c'`.

    `c` is the cell state the forget gate multiplied (the input `cx`), `tc = tanh(c')`.
    """
    dc_new = grad_c + grad_h * o * (1 - tc * tc)
    da_i = dc_new * g * i * (1 - i)
    da_f = dc_new * c * f * (1 - f)
    da_g = dc_new * i * (1 - g * g)
    da_o = grad_h * tc * o * (1 - o)
    return torch.cat([da_i, da_f, da_g, da_o], dim=-1), dc_new


class LSTMCellFunction(torch.autograd.Function):
    """One LSTM step: `(x, h, c) -> (h', c')` with `c' = f c + i g`, `h' = o tanh(c')`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, hx, cx, w_ih, w_hh, b_ih, b_hh):
        i, f, g, o = _lstm_gates(input, hx, w_ih, w_hh, b_ih, b_hh)
        c_new = f * cx + i * g
        return o * torch.tanh(c_new), c_new

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, hx, cx, w_ih, w_hh, b_ih, b_hh = inputs
        ctx.save_for_backward(input, hx, cx, w_ih, w_hh, b_ih, b_hh)
        ctx.has_b_ih, ctx.has_b_hh = b_ih is not None, b_hh is not None

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        x, h, c, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        need = ctx.needs_input_grad
        i, f, g, o = _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
        tc = torch.tanh(f * c + i * g)
        da, dc_new = _lstm_dgates(i, f, g, o, c, tc, grad_h, grad_c)
        gx = torch.matmul(da, w_ih) if need[0] else None
        gh = torch.matmul(da, w_hh) if need[1] else None
        gc = dc_new * f if need[2] else None
        return (gx, gh, gc, *_param_grads(ctx, da, da, x, h, w_ih, w_hh, first=3))


# -- GRU --------------------------------------------------------------------------------------


def _gru_gates(x, h, w_ih, w_hh, b_ih, b_hh):
    """`r, z, n` and `hn = W_hn h + b_hn` (what r multiplies), each `(..., H)`."""
    xr, xz, xn = _affine(x, w_ih, b_ih).chunk(3, dim=-1)
    hr, hz, hn = _affine(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    return r, z, torch.tanh(xn + r * hn), hn


class GRUCellFunction(torch.autograd.Function):
    """One GRU step: `(x, h) -> h' = (1 - z) n + z h`, `n = tanh(W_in x + b_in + r (W_hn h + b_hn))`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, hx, w_ih, w_hh, b_ih, b_hh):
        r, z, n, _ = _gru_gates(input, hx, w_ih, w_hh, b_ih, b_hh)
        return (1 - z) * n + z * hx

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, hx, w_ih, w_hh, b_ih, b_hh = inputs
        ctx.save_for_backward(input, hx, w_ih, w_hh, b_ih, b_hh)
        ctx.has_b_ih, ctx.has_b_hh = b_ih is not None, b_hh is not None

    @staticmethod
    def backward(ctx, grad_out):
        x, h, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        need = ctx.needs_input_grad
        r, z, n, hn = _gru_gates(x, h, w_ih, w_hh, b_ih, b_hh)
        da_n = grad_out * (1 - z) * (1 - n * n)
        da_r = da_n * hn * r * (1 - r)
        da_z = grad_out * (h - n) * z * (1 - z)
        d_ih = torch.cat([da_r, da_z, da_n], dim=-1)
        # b_hn and W_hn h sit inside r * (...), so their block carries the factor r.
        d_hh = torch.cat([da_r, da_z, da_n * r], dim=-1)
        gx = torch.matmul(d_ih, w_ih) if need[0] else None
        gh = grad_out * z + torch.matmul(d_hh, w_hh) if need[1] else None
        return (gx, gh, *_param_grads(ctx, d_ih, d_hh, x, h, w_ih, w_hh, first=2))


# -- functional forms -------------------------------------------------------------------------


def _check(input, states: dict, w_ih, w_hh, b_ih, b_hh, gates: int) -> None:
    if w_hh.dim() != 2 or w_ih.dim() != 2:
        raise ValueError(f"`w_ih` (={tuple(w_ih.shape)}) and `w_hh` (={tuple(w_hh.shape)}) must be 2-D")
    hidden = w_hh.shape[1]
    if tuple(w_hh.shape) != (gates * hidden, hidden):
        raise ValueError(f"`w_hh` (={tuple(w_hh.shape)}) must be ({gates} * hidden, hidden)")
    if w_ih.shape[0] != gates * hidden:
        raise ValueError(f"`w_ih` (={tuple(w_ih.shape)}) must have {gates} * hidden (={gates * hidden}) rows")
    if input.dim() == 0 or input.shape[-1] != w_ih.shape[1]:
        raise ValueError(f"`input` (={tuple(input.shape)}) last dim must match `w_ih` (={tuple(w_ih.shape)})")
    want = (*input.shape[:-1], hidden)
    for name, s in states.items():
        if tuple(s.shape) != want:
            raise ValueError(f"`{name}` (={tuple(s.shape)}) must have shape {want}")
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None and tuple(b.shape) != (gates * hidden,):
            raise ValueError(f"`{name}` (={tuple(b.shape)}) must have shape ({gates * hidden},)")


def lstm_cell(input, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step, like `torch.lstm_cell(input, (hx, cx), w_ih, w_hh, b_ih, b_hh)`.

    `torch.lstm_cell` takes the state as one pair; here `hx` and `cx` are separate, so that
    each is an input of the Function with its own gradient.

    Args:
        input: `(..., in)`, including unbatched `(in,)` and empty `(0, in)`.
        hx, cx: `(..., H)`.
        w_ih: `(4H, in)`, gate blocks i, f, g, o.
        w_hh: `(4H, H)`.
        b_ih, b_hh: `(4H,)` or None.

    Returns:
        `(h', c')`, each `(..., H)`.
    """
    _check(input, {"hx": hx, "cx": cx}, w_ih, w_hh, b_ih, b_hh, gates=4)
    return LSTMCellFunction.apply(input, hx, cx, w_ih, w_hh, b_ih, b_hh)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> torch.Tensor:
    """Drop-in for `torch.gru_cell(input, hx, w_ih, w_hh, b_ih, b_hh)`.

    Args:
        input: `(..., in)`, including unbatched `(in,)` and empty `(0, in)`.
        hx: `(..., H)`.
        w_ih: `(3H, in)`, gate blocks r, z, n.
        w_hh: `(3H, H)`.
        b_ih, b_hh: `(3H,)` or None.

    Returns:
        `h'`, `(..., H)`.
    """
    _check(input, {"hx": hx}, w_ih, w_hh, b_ih, b_hh, gates=3)
    return GRUCellFunction.apply(input, hx, w_ih, w_hh, b_ih, b_hh)


# -- modules ----------------------------------------------------------------------------------


class _CellBase(nn.Module):
    """torch.nn.RNNCellBase's parameters and init: every parameter uniform(-1/sqrt(H), 1/sqrt(H))."""

    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` (={value}) must be a non-negative int")
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        rows = self._gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty((rows, input_size), **factory))
        self.weight_hh = nn.Parameter(torch.empty((rows, hidden_size), **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, **factory))
            self.bias_hh = nn.Parameter(torch.empty(rows, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same draws, in the same order (registration order), as torch.nn.RNNCellBase.
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def _batched(self, input: torch.Tensor, states: dict) -> bool:
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"`input` of {name} must be 1D or 2D, got {input.dim()}D (shape {tuple(input.shape)})")
        for key, s in states.items():
            if s is not None and s.dim() not in (1, 2):
                raise ValueError(f"`{key}` of {name} must be 1D or 2D, got {s.dim()}D (shape {tuple(s.shape)})")
        return input.dim() == 2

    def _zeros(self, input):
        return torch.zeros(*input.shape[:-1], self.hidden_size, dtype=input.dtype, device=input.device)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTMCell(_CellBase):
    """Drop-in for `torch.nn.LSTMCell`: `weight_ih (4H, in)`, `weight_hh (4H, H)`, `bias_ih`, `bias_hh (4H,)`.

    `forward(input, hx=None)` takes `input (N, in)` or unbatched `(in,)` and `hx = (h, c)`,
    each `(N, H)` or `(H,)` (zeros when None); returns `(h', c')` of the same shape.
    """

    _gates = 4

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        h, c = (None, None) if hx is None else hx
        self._batched(input, {"hx[0]": h, "hx[1]": c})
        h = self._zeros(input) if h is None else h
        c = self._zeros(input) if c is None else c
        return lstm_cell(input, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(_CellBase):
    """Drop-in for `torch.nn.GRUCell`: `weight_ih (3H, in)`, `weight_hh (3H, H)`, `bias_ih`, `bias_hh (3H,)`.

    `forward(input, hx=None)` takes `input (N, in)` or unbatched `(in,)` and `hx (N, H)` or
    `(H,)` (zeros when None); returns `h'` of the same shape as `hx`.
    """

    _gates = 3

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> torch.Tensor:
        self._batched(input, {"hx": hx})
        hx = self._zeros(input) if hx is None else hx
        return gru_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
