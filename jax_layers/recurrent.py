"""Recurrent cells (LSTM, GRU), one time step, with hand-written VJPs and Flax NNX modules.

The functions take fused kernels in Flax's layout: `w_ih (in, G*H)` and `w_hh (H, G*H)`
hold the G gate blocks side by side along the last axis (LSTM: i, f, g, o; GRU: r, z, n),
the transposes of torch's `weight_ih`/`weight_hh`. The modules keep Flax's own parameters
(per-gate `Linear`s for the LSTM, fused `dense_i`/`dense_h` for the GRU) and assemble the
fused kernels from them on each call.
"""

from __future__ import annotations

import warnings
from types import MappingProxyType
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes, initializers
from flax.nnx.nn.recurrent import modified_orthogonal  # the built-in's default itself, so the defaults are equal

from .linear import linear as _dense

default_kernel_init = initializers.lecun_normal()
default_bias_init = initializers.zeros_init()


def _affine(x, w, b):
    y = jnp.matmul(x, w)
    return y if b is None else y + b


def _param_grads(d_ih, d_hh, x, h, w_ih, w_hh, b_ih, b_hh):
    """Gradients of `w_ih, w_hh, b_ih, b_hh` from the gradients of the two affine maps `(..., G*H)`."""
    d_ih2, d_hh2 = d_ih.reshape(-1, w_ih.shape[1]), d_hh.reshape(-1, w_hh.shape[1])
    gw_ih = jnp.matmul(x.reshape(-1, w_ih.shape[0]).T, d_ih2)
    gw_hh = jnp.matmul(h.reshape(-1, w_hh.shape[0]).T, d_hh2)
    gb_ih = None if b_ih is None else d_ih2.sum(0)
    gb_hh = None if b_hh is None else d_hh2.sum(0)
    return gw_ih, gw_hh, gb_ih, gb_hh


# -- LSTM -------------------------------------------------------------------------------------


def _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh):
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    ai, af, ag, ao = jnp.split(a, 4, axis=-1)
    return jax.nn.sigmoid(ai), jax.nn.sigmoid(af), jnp.tanh(ag), jax.nn.sigmoid(ao)


def _lstm(x, h, c, w_ih, w_hh, b_ih, b_hh):
    i, f, g, o = _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    c_new = f * c + i * g
    return o * jnp.tanh(c_new), c_new


@jax.custom_vjp
def _lstm_vjp(x, h, c, w_ih, w_hh, b_ih, b_hh):
    return _lstm(x, h, c, w_ih, w_hh, b_ih, b_hh)


def _lstm_fwd(x, h, c, w_ih, w_hh, b_ih, b_hh):
    i, f, g, o = _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    return (o * tc, c_new), (x, h, c, w_ih, w_hh, b_ih, b_hh, i, f, g, o, tc)


def _lstm_dgates(i, f, g, o, c, tc, gh, gc):
    """Gradient of the pre-activation gates `(..., 4H)` and of `c'`; `c` is the input cell state."""
    dc_new = gc + gh * o * (1 - tc * tc)
    da_i = dc_new * g * i * (1 - i)
    da_f = dc_new * c * f * (1 - f)
    da_g = dc_new * i * (1 - g * g)
    da_o = gh * tc * o * (1 - o)
    return jnp.concatenate([da_i, da_f, da_g, da_o], axis=-1), dc_new


def _lstm_bwd(res, cts):
    x, h, c, w_ih, w_hh, b_ih, b_hh, i, f, g, o, tc = res
    gh, gc = cts
    da, dc_new = _lstm_dgates(i, f, g, o, c, tc, gh, gc)
    grads = _param_grads(da, da, x, h, w_ih, w_hh, b_ih, b_hh)
    return (jnp.matmul(da, w_ih.T), jnp.matmul(da, w_hh.T), dc_new * f, *grads)


_lstm_vjp.defvjp(_lstm_fwd, _lstm_bwd)


# -- GRU --------------------------------------------------------------------------------------


def _gru_gates(x, h, w_ih, w_hh, b_ih, b_hh):
    """`r, z, n` and `hn = h W_hn + b_hn` (what r multiplies), each `(..., H)`."""
    xr, xz, xn = jnp.split(_affine(x, w_ih, b_ih), 3, axis=-1)
    hr, hz, hn = jnp.split(_affine(h, w_hh, b_hh), 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    return r, z, jnp.tanh(xn + r * hn), hn


def _gru(x, h, w_ih, w_hh, b_ih, b_hh):
    r, z, n, _ = _gru_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    return (1 - z) * n + z * h


@jax.custom_vjp
def _gru_vjp(x, h, w_ih, w_hh, b_ih, b_hh):
    return _gru(x, h, w_ih, w_hh, b_ih, b_hh)


def _gru_fwd(x, h, w_ih, w_hh, b_ih, b_hh):
    r, z, n, hn = _gru_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    return (1 - z) * n + z * h, (x, h, w_ih, w_hh, b_ih, b_hh, r, z, n, hn)


def _gru_bwd(res, g):
    x, h, w_ih, w_hh, b_ih, b_hh, r, z, n, hn = res
    da_n = g * (1 - z) * (1 - n * n)
    da_r = da_n * hn * r * (1 - r)
    da_z = g * (h - n) * z * (1 - z)
    d_ih = jnp.concatenate([da_r, da_z, da_n], axis=-1)
    # b_hn and h W_hn sit inside r * (...), so their block carries the factor r.
    d_hh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
    grads = _param_grads(d_ih, d_hh, x, h, w_ih, w_hh, b_ih, b_hh)
    return (jnp.matmul(d_ih, w_ih.T), g * z + jnp.matmul(d_hh, w_hh.T), *grads)


_gru_vjp.defvjp(_gru_fwd, _gru_bwd)


# -- functional forms -------------------------------------------------------------------------


def _check(x, states: dict, w_ih, w_hh, b_ih, b_hh, gates: int) -> None:
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ValueError(f"`w_ih` (={w_ih.shape}) and `w_hh` (={w_hh.shape}) must be 2-D")
    hidden = w_hh.shape[0]
    if w_hh.shape != (hidden, gates * hidden):
        raise ValueError(f"`w_hh` (={w_hh.shape}) must be (hidden, {gates} * hidden)")
    if w_ih.shape[1] != gates * hidden:
        raise ValueError(f"`w_ih` (={w_ih.shape}) must have {gates} * hidden (={gates * hidden}) columns")
    if x.ndim == 0 or x.shape[-1] != w_ih.shape[0]:
        raise ValueError(f"`x` (={x.shape}) last dim must match `w_ih` (={w_ih.shape}) rows")
    want = (*x.shape[:-1], hidden)
    for name, s in states.items():
        if s.shape != want:
            raise ValueError(f"`{name}` (={s.shape}) must have shape {want}")
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None and b.shape != (gates * hidden,):
            raise ValueError(f"`{name}` (={b.shape}) must have shape ({gates * hidden},)")


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple[jax.Array, jax.Array]:
    """One LSTM step with a hand-written VJP.

    Args:
        x: `(..., in)`.
        h, c: `(..., H)`.
        w_ih: `(in, 4H)`, gate blocks i, f, g, o along the last axis.
        w_hh: `(H, 4H)`.
        b_ih, b_hh: `(4H,)` or None; only their sum matters to the outputs.

    Returns:
        `(h', c')`, each `(..., H)`.
    """
    _check(x, {"h": h, "c": c}, w_ih, w_hh, b_ih, b_hh, gates=4)
    return _lstm_vjp(x, h, c, w_ih, w_hh, b_ih, b_hh)


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None) -> jax.Array:
    """One GRU step (torch's formula) with a hand-written VJP.

    `n = tanh(x W_in + b_in + r * (h W_hn + b_hn))`: `b_hn` (the `n` block of `b_hh`) is
    scaled by `r`, so it is not interchangeable with `b_in`.

    Args:
        x: `(..., in)`.
        h: `(..., H)`.
        w_ih: `(in, 3H)`, gate blocks r, z, n along the last axis.
        w_hh: `(H, 3H)`.
        b_ih, b_hh: `(3H,)` or None.

    Returns:
        `h'`, `(..., H)`.
    """
    _check(x, {"h": h}, w_ih, w_hh, b_ih, b_hh, gates=3)
    return _gru_vjp(x, h, w_ih, w_hh, b_ih, b_hh)


# -- modules ----------------------------------------------------------------------------------


class _Dense(nnx.Module):
    """flax.nnx.Linear's parameters (same key order and metadata), applied with our `linear`."""

    def __init__(self, in_features, out_features, *, use_bias, kernel_init, bias_init, param_dtype, rngs,
                 kernel_metadata=MappingProxyType({}), bias_metadata=MappingProxyType({})):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype), **kernel_metadata)
        self.bias: nnx.Param | None
        if use_bias:
            self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype), **bias_metadata)
        else:
            self.bias = nnx.data(None)
        self.in_features, self.out_features, self.use_bias = in_features, out_features, use_bias

    def __call__(self, x):
        bias = None if self.bias is None else self.bias[...]
        x, kernel, bias = dtypes.promote_dtype((x, self.kernel[...], bias))
        return _dense(x, kernel, bias)


def _is_default(gate_fn, activation_fn) -> bool:
    return gate_fn is jax.nn.sigmoid and activation_fn is jnp.tanh


class _CellBase(nnx.RNNCellBase):
    """What flax.nnx's cells share: config attributes, rngs handling and `initialize_carry`."""

    _carry_parts = 1

    def _setup(self, in_features, hidden_features, gate_fn, activation_fn, dtype, param_dtype, carry_init,
               promote_dtype, keep_rngs, rngs):
        for name, value in (("in_features", in_features), ("hidden_features", hidden_features)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` (={value}) must be a non-negative int")
        self.in_features = in_features
        self.hidden_features = hidden_features
        self.gate_fn = gate_fn
        self.activation_fn = activation_fn
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype
        self.rngs: nnx.RngStream | None
        if keep_rngs:
            warnings.warn("keep_rngs argument is deprecated. Please use rngs argument in __call__ instead ")
            self.rngs = rngs.carry.fork()
        else:
            self.rngs = nnx.data(None)
        if carry_init:
            warnings.warn(
                "carry_init is provided in __init__. Please, use carry_init argument in `initialize_carry` "
                "method instead to initialize the carry."
            )
        self.carry_init = carry_init

    def initialize_carry(self, input_shape: tuple[int, ...], rngs=None, carry_init=None):
        """The zero (or `carry_init`) carry for inputs of shape `input_shape`, as in Flax.

        Returns:
            `(c, h)` for the LSTM, `h` for the GRU; each `(*input_shape[:-1], H)`.
        """
        if rngs is None:
            rngs = self.rngs
        if isinstance(rngs, nnx.Rngs):
            rngs = rngs.carry
        if rngs is None:
            raise ValueError("RNGs must be provided to initialize the cell carry.")
        carry_init = carry_init or self.carry_init or initializers.zeros_init()
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        parts = tuple(carry_init(rngs(), shape, self.param_dtype) for _ in range(self._carry_parts))
        return parts if self._carry_parts > 1 else parts[0]

    @property
    def num_feature_axes(self) -> int:
        return 1


class LSTMCell(_CellBase):
    """Drop-in for `flax.nnx.LSTMCell`: per-gate `ii, if_, ig, io` (`(in, H)`, no bias) and
    `hi, hf, hg, ho` (`(H, H)` kernels with `(H,)` biases), same init key order.

    `cell((c, h), x) -> ((c', h'), h')` for `x (..., in)`, `c, h (..., H)`. The single bias
    per gate is torch's `b_ih + b_hh`.

    Example:
        >>> cell = LSTMCell(3, 4, rngs=nnx.Rngs(0))
        >>> x = jnp.ones((2, 3))
        >>> (c, h), y = cell(cell.initialize_carry(x.shape, nnx.Rngs(1)), x)
        >>> y.shape
        (2, 4)
    """

    _carry_parts = 2

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = jax.nn.sigmoid,
        activation_fn: Callable[..., Any] = jnp.tanh,
        kernel_init=default_kernel_init,
        recurrent_kernel_init=modified_orthogonal,
        bias_init=initializers.zeros_init(),
        dtype=None,
        param_dtype=jnp.float32,
        carry_init=None,
        promote_dtype=dtypes.promote_dtype,
        keep_rngs: bool = False,
        rngs: nnx.Rngs,
        kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
        recurrent_kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
    ):
        self._setup(in_features, hidden_features, gate_fn, activation_fn, dtype, param_dtype, carry_init,
                    promote_dtype, keep_rngs, rngs)

        def dense_i():
            return _Dense(in_features, hidden_features, use_bias=False, kernel_init=kernel_init, bias_init=bias_init,
                          param_dtype=param_dtype, rngs=rngs, kernel_metadata=kernel_metadata)

        def dense_h():
            return _Dense(hidden_features, hidden_features, use_bias=True, kernel_init=recurrent_kernel_init,
                          bias_init=bias_init, param_dtype=param_dtype, rngs=rngs,
                          kernel_metadata=recurrent_kernel_metadata, bias_metadata=bias_metadata)

        # Same construction order as flax.nnx.LSTMCell, so equal Rngs give equal parameters.
        self.ii, self.if_, self.ig, self.io = dense_i(), dense_i(), dense_i(), dense_i()
        self.hi, self.hf, self.hg, self.ho = dense_h(), dense_h(), dense_h(), dense_h()

    def __call__(self, carry, inputs):
        c, h = carry
        gates_i = (self.ii, self.if_, self.ig, self.io)
        gates_h = (self.hi, self.hf, self.hg, self.ho)
        w_ih = jnp.concatenate([d.kernel[...] for d in gates_i], axis=-1)
        w_hh = jnp.concatenate([d.kernel[...] for d in gates_h], axis=-1)
        b = jnp.concatenate([d.bias[...] for d in gates_h], axis=-1)
        x, h, c, w_ih, w_hh, b = self.promote_dtype((inputs, h, c, w_ih, w_hh, b), dtype=self.dtype)
        if _is_default(self.gate_fn, self.activation_fn):
            new_h, new_c = lstm_cell(x, h, c, w_ih, w_hh, None, b)
        else:
            # Other nonlinearities have no hand-written VJP: plain JAX autodiff.
            ai, af, ag, ao = jnp.split(x @ w_ih + h @ w_hh + b, 4, axis=-1)
            new_c = self.gate_fn(af) * c + self.gate_fn(ai) * self.activation_fn(ag)
            new_h = self.gate_fn(ao) * self.activation_fn(new_c)
        return (new_c, new_h), new_h


class GRUCell(_CellBase):
    """Drop-in for `flax.nnx.GRUCell`: `dense_i` (kernel `(in, 3H)`, bias `(3H,)`) and
    `dense_h` (kernel `(H, 3H)`, no bias), gate blocks r, z, n; same init key order.

    `cell(h, x) -> (h', h')` for `x (..., in)`, `h (..., H)`.

    Flax's cell is torch's with `b_hh` folded away: `r` and `z` take `b_ir + b_hr` and
    `b_iz + b_hz` from `dense_i.bias`, and `b_hn` (inside `r * (...)`) does not exist, so a
    torch GRUCell with a nonzero `b_hn` has no Flax equivalent. `use_recurrent_bias=True`
    (not in Flax) adds torch's `b_hh` as `dense_h.bias (3H,)`, drawn after `dense_h.kernel`,
    which makes every torch GRUCell expressible; the default is Flax's cell exactly.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = jax.nn.sigmoid,
        activation_fn: Callable[..., Any] = jnp.tanh,
        kernel_init=default_kernel_init,
        recurrent_kernel_init=initializers.orthogonal(),
        bias_init=initializers.zeros_init(),
        dtype=None,
        param_dtype=jnp.float32,
        carry_init=None,
        promote_dtype=dtypes.promote_dtype,
        keep_rngs: bool = False,
        use_recurrent_bias: bool = False,
        rngs: nnx.Rngs,
        kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
        recurrent_kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
    ):
        self._setup(in_features, hidden_features, gate_fn, activation_fn, dtype, param_dtype, carry_init,
                    promote_dtype, keep_rngs, rngs)
        self.dense_i = _Dense(in_features, 3 * hidden_features, use_bias=True, kernel_init=kernel_init,
                              bias_init=bias_init, param_dtype=param_dtype, rngs=rngs,
                              kernel_metadata=kernel_metadata, bias_metadata=bias_metadata)
        self.dense_h = _Dense(hidden_features, 3 * hidden_features, use_bias=use_recurrent_bias,
                              kernel_init=recurrent_kernel_init, bias_init=bias_init, param_dtype=param_dtype,
                              rngs=rngs, kernel_metadata=recurrent_kernel_metadata, bias_metadata=bias_metadata)
        self.use_recurrent_bias = use_recurrent_bias

    def __call__(self, carry, inputs):
        b_hh = None if self.dense_h.bias is None else self.dense_h.bias[...]
        x, h, w_ih, w_hh, b_ih, b_hh = self.promote_dtype(
            (inputs, carry, self.dense_i.kernel[...], self.dense_h.kernel[...], self.dense_i.bias[...], b_hh),
            dtype=self.dtype,
        )
        if _is_default(self.gate_fn, self.activation_fn):
            new_h = gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
        else:
            # Other nonlinearities have no hand-written VJP: plain JAX autodiff.
            xr, xz, xn = jnp.split(_affine(x, w_ih, b_ih), 3, axis=-1)
            hr, hz, hn = jnp.split(_affine(h, w_hh, b_hh), 3, axis=-1)
            r, z = self.gate_fn(xr + hr), self.gate_fn(xz + hz)
            new_h = (1.0 - z) * self.activation_fn(xn + r * hn) + z * h
        return new_h, new_h
