"""Convolutions: gradchecks, drop-in parity with the built-ins, weight porting.

The planted bugs (`crosscheck/mutants/conv.py`) run in tests/test_mutants.py with every other mutant.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from jax import lax
from jax.test_util import check_grads

from crosscheck.convert import nnx_to_torch, torch_to_nnx
from crosscheck.convert.conv import conv_transpose2d_map, nnx_conv_kwargs, nnx_conv_transpose_kwargs
from helpers import np_rng, t64
from torch_layers import conv as TC

# The module, not `jax_layers.conv`, which the package re-exports as the function.
JC = importlib.import_module("jax_layers.conv")

# torch warns that "same" with an even kernel pads a copy of the input; ours pads explicitly.
SAME_EVEN = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# (x shape, weight shape, bias, kwargs): stride + padding, "same" + dilation (an even kernel:
# uneven padding), groups, "valid" without bias, unbatched, odd sizes throughout.
CONV2D = [
    ((1, 2, 5, 4), (3, 2, 3, 2), True, dict(stride=2, padding=1)),
    ((1, 2, 5, 4), (2, 2, 3, 2), True, dict(padding="same", dilation=(2, 1))),
    ((1, 4, 5, 4), (4, 2, 3, 1), True, dict(stride=(1, 2), padding=(1, 0), groups=2)),
    ((3, 2, 5, 4), (1, 2, 2, 3), False, dict(padding="valid")),
    ((3, 5, 4), (2, 3, 2, 3), True, dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2))),
]
CONV1D = [
    ((1, 3, 9), (2, 3, 3), True, dict(stride=2, padding=2)),
    ((1, 4, 7), (2, 2, 4), True, dict(padding="same", groups=2)),
    ((4, 8), (3, 4, 2), False, dict(stride=3, dilation=2)),
]
CONV_T2D = [
    ((1, 2, 3, 3), (2, 2, 3, 3), True, dict(stride=2, padding=1, output_padding=1)),
    ((1, 2, 3, 3), (2, 3, 2, 3), False, dict(stride=(1, 2), padding=(0, 1), output_padding=(1, 1), dilation=2)),
    ((2, 4, 3, 2), (4, 1, 2, 3), True, dict(stride=3, padding=1, output_padding=(2, 0), groups=2)),
    ((2, 3, 3), (2, 2, 3, 2), True, dict(stride=2)),
]
TORCH = [("conv2d", c) for c in CONV2D] + [("conv1d", c) for c in CONV1D] + [("conv_transpose2d", c) for c in CONV_T2D]


def _args(op, x_shape, w_shape, bias, kwargs, seed=0):
    rng = np_rng(seed)
    x, w = t64(rng.standard_normal(x_shape)), t64(rng.standard_normal(w_shape))
    out = w_shape[1] * kwargs.get("groups", 1) if op == "conv_transpose2d" else w_shape[0]
    return x, w, t64(rng.standard_normal(out)) if bias else None


def _ids(case):
    op, (x, w, bias, kwargs) = case
    return f"{op}-{x}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}{'' if bias else '-nobias'}"


@SAME_EVEN
@pytest.mark.parametrize("case", TORCH, ids=_ids)
def test_torch_gradcheck(case):
    op, (x_shape, w_shape, bias, kwargs) = case
    args = tuple(a for a in _args(op, x_shape, w_shape, bias, kwargs) if a is not None)
    f = lambda *a: getattr(TC, op)(*a, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


@SAME_EVEN
@pytest.mark.parametrize("case", TORCH, ids=_ids)
def test_torch_functional_is_a_drop_in(case):
    op, (x_shape, w_shape, bias, kwargs) = case
    ours, theirs = _args(op, x_shape, w_shape, bias, kwargs), _args(op, x_shape, w_shape, bias, kwargs)
    ya, yb = getattr(TC, op)(*ours, **kwargs), getattr(F, op)(*theirs, **kwargs)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    ct = torch.randn_like(ya)
    leaves = lambda args: [a for a in args if a is not None]  # noqa: E731
    for a, b in zip(torch.autograd.grad(ya, leaves(ours), ct), torch.autograd.grad(yb, leaves(theirs), ct)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op,x_shape,w_shape,kwargs", [
    ("conv2d", (0, 3, 5, 4), (2, 3, 2, 3), dict(padding=1)),
    ("conv1d", (0, 4, 7), (2, 2, 3), dict(groups=2)),
    ("conv_transpose2d", (0, 3, 4, 3), (3, 2, 3, 3), dict(stride=2)),
], ids=["conv2d", "conv1d", "conv_transpose2d"])
def test_torch_empty_batch_like_builtin(op, x_shape, w_shape, kwargs):
    x, w, b = _args(op, x_shape, w_shape, True, kwargs)
    y = getattr(TC, op)(x, w, b, **kwargs)
    assert y.shape == getattr(F, op)(x, w, b, **kwargs).shape
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


@pytest.mark.parametrize("call,match", [
    (lambda: TC.conv2d(torch.randn(1, 4, 5, 5), torch.randn(6, 2, 3, 3), groups=3), "`groups`"),
    (lambda: TC.conv2d(torch.randn(1, 4, 5, 5), torch.randn(6, 4, 3, 3), stride=2, padding="same"), "`padding`"),
    (lambda: TC.conv2d(torch.randn(1, 4, 5, 5), torch.randn(6, 4, 3, 3), padding="full"), "`padding`"),
    (lambda: TC.conv1d(torch.randn(1, 4, 5), torch.randn(6, 4, 3), stride=0), "`stride`"),
    (lambda: TC.conv2d(torch.randn(1, 3, 5, 5), torch.randn(6, 4, 3, 3)), "`input`"),
    (lambda: TC.conv_transpose2d(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3), stride=2, output_padding=2),
     "`output_padding`"),
    (lambda: TC.Conv2d(4, 6, 3, padding_mode="symmetric"), "`padding_mode` \\(='symmetric'\\)"),
    (lambda: TC.ConvTranspose2d(4, 6, 3, padding_mode="reflect"), "`padding_mode`.*transposed"),
    (lambda: TC.Conv2d(4, 6, 3, padding=3, padding_mode="reflect")(torch.randn(1, 4, 5, 3)),
     "`padding` \\(=\\(\\(3, 3\\), \\(3, 3\\)\\)\\) must be below"),
    (lambda: TC.Conv1d(4, 6, 3, padding=4, padding_mode="circular")(torch.randn(1, 4, 3)), "`padding`.*at most"),
    (lambda: TC.Conv1d(4, 6, 0), "`kernel_size`"),
    (lambda: JC.conv(jnp.ones((1, 5, 5, 4)), jnp.ones((3, 3, 2, 6)), feature_group_count=3), "`feature_group_count`"),
    (lambda: JC.conv(jnp.ones((1, 5, 5, 4)), jnp.ones((3, 3, 4, 6)), padding="FULL"), "`padding`"),
    (lambda: JC.conv_transpose(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 4, 6))), "`x`"),
], ids=["groups", "same-strided", "padding-string", "stride", "channels", "output_padding", "padding_mode",
        "padding_mode-transposed", "reflect-too-wide", "circular-too-wide",
        "kernel_size", "jax-groups", "jax-padding", "jax-transpose-features"])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@SAME_EVEN
@pytest.mark.parametrize("cls,args,kwargs,x_shape", [
    ("Conv2d", (4, 6, (3, 2)), dict(stride=2, padding=1, groups=2), (2, 4, 7, 5)),
    ("Conv2d", (3, 2, 3), dict(padding="same", dilation=2, bias=False), (3, 6, 5)),
    ("Conv1d", (4, 6, 4), dict(padding="same"), (2, 4, 7)),
    ("Conv2d", (4, 6, (3, 2)), dict(stride=2, padding=(2, 1), groups=2, padding_mode="reflect"), (2, 4, 7, 5)),
    ("Conv2d", (3, 2, (2, 3)), dict(padding="same", dilation=2, padding_mode="replicate"), (3, 6, 5)),
    ("Conv1d", (4, 6, 3), dict(padding=3, padding_mode="circular", bias=False), (2, 4, 3)),
    ("ConvTranspose2d", (4, 6, (3, 2)), dict(stride=2, padding=1, output_padding=1, groups=2), (2, 4, 3, 4)),
    ("ConvTranspose2d", (2, 3, 3), dict(stride=(1, 2), dilation=2, bias=False), (1, 2, 3, 4)),
], ids=["conv2d-groups", "conv2d-same-unbatched", "conv1d-same", "conv2d-reflect", "conv2d-replicate-same-unbatched",
        "conv1d-circular-whole-input", "conv_transpose2d-groups",
        "conv_transpose2d-dilation"])
def test_torch_module_is_a_drop_in(cls, args, kwargs, x_shape):
    torch.manual_seed(0)
    builtin = getattr(torch.nn, cls)(*args, **kwargs, dtype=torch.float64)
    torch.manual_seed(0)
    ours = getattr(TC, cls)(*args, **kwargs, dtype=torch.float64)
    # Same init draws in the same order: identical parameters from the same seed.
    assert dict(ours.named_parameters()).keys() == dict(builtin.named_parameters()).keys()
    for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
        assert torch.equal(p, q), name
    torch.manual_seed(1)
    ours.load_state_dict(getattr(torch.nn, cls)(*args, **kwargs, dtype=torch.float64).state_dict())
    builtin.load_state_dict(ours.state_dict())
    x = torch.randn(x_shape, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ours(x1) ** 2).sum().backward()
    (builtin(x2) ** 2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
    for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12, msg=name)
    assert repr(ours) == repr(builtin)


def test_torch_conv_transpose_output_size():
    torch.manual_seed(0)
    builtin = torch.nn.ConvTranspose2d(3, 2, 3, stride=3, padding=1)
    ours = TC.ConvTranspose2d(3, 2, 3, stride=3, padding=1)
    ours.load_state_dict(builtin.state_dict())
    x = torch.randn(1, 3, 4, 3)
    for size in [(10, 7), (12, 9), (1, 2, 11, 8)]:
        torch.testing.assert_close(ours(x, output_size=size), builtin(x, output_size=size))
    with pytest.raises(ValueError, match="`output_size`"):
        ours(x, output_size=(13, 7))


# -- JAX ----------------------------------------------------------------------------------

def _lax_conv(x, k, b, strides, padding, input_dilation, kernel_dilation, groups):
    nd = k.ndim - 2
    spec = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC")}[nd]
    y = lax.conv_general_dilated(x, k, strides, padding, input_dilation, kernel_dilation, spec,
                                 feature_group_count=groups)
    return y if b is None else y + b


# (x shape, kernel shape, bias, strides, padding, input_dilation, kernel_dilation, groups)
JAX_CONV = [
    ((2, 7, 5, 3), (3, 2, 3, 4), True, (2, 2), ((1, 1), (1, 1)), (1, 1), (1, 1), 1),
    ((1, 6, 5, 2), (3, 2, 2, 3), True, (1, 1), "SAME", (1, 1), (2, 1), 1),
    ((2, 5, 6, 4), (3, 1, 2, 6), False, (1, 2), ((1, 1), (0, 0)), (1, 1), (1, 1), 2),
    ((3, 6, 5, 2), (2, 3, 2, 4), True, (3, 2), ((2, 0), (1, 2)), (2, 1), (2, 1), 1),
    ((2, 4, 3, 4), (3, 2, 2, 6), True, (2, 1), ((-1, 2), (1, 1)), (3, 2), (1, 2), 2),
    ((3, 9, 3), (3, 3, 4), False, (2,), ((2, 1),), (1,), (1,), 1),
    ((1, 7, 4), (4, 2, 2), True, (1,), "SAME", (1,), (1,), 2),
]


def _jax_conv_args(x_shape, k_shape, bias, seed=0):
    rng = np_rng(seed)
    x, k = jnp.asarray(rng.standard_normal(x_shape)), jnp.asarray(rng.standard_normal(k_shape))
    return (x, k, jnp.asarray(rng.standard_normal(k_shape[-1]))) if bias else (x, k)


@pytest.mark.parametrize("case", JAX_CONV, ids=lambda c: f"{c[0]}-{c[1]}-s{c[3]}-p{c[4]}-ld{c[5]}-rd{c[6]}-g{c[7]}")
def test_jax_conv_check_grads_and_matches_lax(case):
    x_shape, k_shape, bias, *config = case
    args = _jax_conv_args(x_shape, k_shape, bias)
    ours = lambda x, k, b=None: JC.conv(x, k, b, *config)  # noqa: E731
    ref = lambda x, k, b=None: _lax_conv(x, k, b, *config)  # noqa: E731
    check_grads(ours, args, order=2, modes=["rev"])
    ya, vjp_a = jax.vjp(ours, *args)
    yb, vjp_b = jax.vjp(ref, *args)
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-12)
    ct = jnp.asarray(np_rng(1).standard_normal(ya.shape))
    for a, b in zip(vjp_a(ct), vjp_b(ct)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


# (x shape, kernel shape, bias, strides, padding, kernel_dilation, transpose_kernel)
JAX_CONV_T = [
    ((2, 4, 3, 3), (3, 3, 3, 2), True, (2, 2), "SAME", (1, 1), False),
    ((1, 3, 4, 2), (2, 3, 4, 2), False, (1, 2), ((1, 2), (0, 1)), (2, 2), True),
    ((2, 5, 3), (3, 3, 2), True, (3,), "VALID", (1,), False),
]


@pytest.mark.parametrize("case", JAX_CONV_T, ids=lambda c: f"{c[0]}-{c[1]}-s{c[3]}-p{c[4]}-tk{c[6]}")
def test_jax_conv_transpose_check_grads_and_matches_lax(case):
    x_shape, k_shape, bias, strides, padding, dilation, transpose_kernel = case
    rng = np_rng()
    x, k = jnp.asarray(rng.standard_normal(x_shape)), jnp.asarray(rng.standard_normal(k_shape))
    out = k_shape[-2] if transpose_kernel else k_shape[-1]
    args = (x, k, jnp.asarray(rng.standard_normal(out))) if bias else (x, k)
    ours = lambda x, k, b=None: JC.conv_transpose(x, k, b, strides, padding, dilation, transpose_kernel)  # noqa: E731

    def ref(x, k, b=None):
        spec = ("NHWC", "HWIO", "NHWC") if x.ndim == 4 else ("NHC", "HIO", "NHC")
        y = lax.conv_transpose(x, k, strides, padding, dilation, spec, transpose_kernel)
        return y if b is None else y + b

    check_grads(ours, args, order=2, modes=["rev"])
    ya, vjp_a = jax.vjp(ours, *args)
    yb, vjp_b = jax.vjp(ref, *args)
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-12)
    ct = jnp.asarray(np_rng(1).standard_normal(ya.shape))
    for a, b in zip(vjp_a(ct), vjp_b(ct)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def _nnx_loss(model, x):
    return jnp.sum(jnp.sin(model(x)))


@pytest.mark.parametrize("cls,args,kwargs,x_shape", [
    ("Conv", (4, 6, (3, 2)), dict(strides=2, padding=1, feature_group_count=2), (2, 7, 5, 4)),
    ("Conv", (3, 2, (3, 3)), dict(padding="SAME", kernel_dilation=2, use_bias=False), (6, 5, 3)),
    ("Conv", (4, 6, 4), dict(padding="CAUSAL", input_dilation=1), (2, 1, 7, 4)),
    ("Conv", (2, 3, (2, 3)), dict(padding="CIRCULAR", strides=(1, 2)), (2, 5, 6, 2)),
    # Wider than the input: the reflection and the wrap repeat (as jnp.pad's do).
    ("Conv", (2, 3, (5, 6)), dict(padding="REFLECT", kernel_dilation=(1, 2)), (2, 3, 4, 2)),
    ("Conv", (2, 3, 7), dict(padding="CIRCULAR"), (2, 2, 2)),
    ("ConvTranspose", (4, 6, (3, 2)), dict(strides=2, padding="SAME"), (2, 3, 4, 4)),
    ("ConvTranspose", (2, 3, (3, 2)), dict(strides=(1, 2), padding=((1, 2), (0, 1)), kernel_dilation=2,
                                      transpose_kernel=True, use_bias=False), (3, 4, 2)),
], ids=["conv-groups", "conv-same-unbatched", "conv1d-causal-2batch", "conv-circular", "conv-reflect-wide",
        "conv1d-circular-wide", "conv_transpose-same",
        "conv_transpose-transpose_kernel"])
def test_nnx_module_is_a_drop_in(cls, args, kwargs, x_shape):
    builtin = getattr(nnx, cls)(*args, **kwargs, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    ours = getattr(JC, cls)(*args, **kwargs, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    for name in ("kernel", "bias"):
        a, b = getattr(ours, name), getattr(builtin, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a[...], b[...])
    x = jnp.asarray(np_rng().standard_normal(x_shape))
    np.testing.assert_allclose(ours(x), builtin(x), rtol=1e-12, atol=1e-12)
    ga = nnx.grad(_nnx_loss, argnums=(0, 1))(ours, x)
    gb = nnx.grad(_nnx_loss, argnums=(0, 1))(builtin, x)
    np.testing.assert_allclose(ga[1], gb[1], rtol=1e-11, atol=1e-11)
    for name in ("kernel", "bias"):
        if getattr(ours, name) is not None:
            np.testing.assert_allclose(ga[0][name][...], gb[0][name][...], rtol=1e-11, atol=1e-11)


def test_jax_empty_batch():
    x, k, b = jnp.zeros((0, 5, 4, 3)), jnp.ones((3, 2, 3, 4)), jnp.ones(4)
    y, vjp = jax.vjp(lambda x, k, b: JC.conv(x, k, b, 2, 1), x, k, b)
    gx, gk, gb = vjp(jnp.ones(y.shape))
    assert y.shape == (0, 3, 3, 4) and gx.shape == x.shape
    np.testing.assert_array_equal(gk, jnp.zeros_like(k))
    np.testing.assert_array_equal(gb, jnp.zeros_like(b))


# -- weight porting between the built-ins ------------------------------------------------

def _nhwc(a):
    return jnp.asarray(np.moveaxis(a, 1, -1))


@SAME_EVEN
@pytest.mark.parametrize("cls,args,kwargs,x_shape", [
    ("Conv2d", (4, 6, (3, 2)), dict(stride=2, padding=1, groups=2), (2, 4, 7, 5)),
    ("Conv2d", (2, 3, 3), dict(padding="same", dilation=2, bias=False), (1, 2, 6, 5)),
    ("Conv1d", (4, 2, 4), dict(padding="same", groups=2), (1, 4, 7)),
    ("Conv1d", (3, 4, 3), dict(stride=2, padding="valid"), (2, 3, 9)),
], ids=["conv2d-groups", "conv2d-same-dilation", "conv1d-same-even", "conv1d-valid"])
def test_conv_weights_port_between_builtins_both_ways(cls, args, kwargs, x_shape):
    torch_conv = getattr(torch.nn, cls)(*args, **kwargs, dtype=torch.float64)
    flax_conv = nnx.Conv(**nnx_conv_kwargs(torch_conv), param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_conv, flax_conv)
    x = np_rng().standard_normal(x_shape)
    expected = torch_conv(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.moveaxis(np.asarray(flax_conv(_nhwc(x))), -1, 1), expected, rtol=1e-12, atol=1e-12)
    back = getattr(torch.nn, cls)(*args, **kwargs, dtype=torch.float64)
    nnx_to_torch(flax_conv, back)
    for name, p in torch_conv.state_dict().items():
        assert torch.equal(p, back.state_dict()[name]), name


# Strides with and without output_padding, padding beyond what the stride covers, dilation,
# non-square kernels: the spatial flip and the (lo, hi) padding must all come out right.
CONV_T_PORTS = [
    dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(0, 1), output_padding=(0, 1), dilation=2, bias=False),
    dict(kernel_size=(2, 3), stride=3, padding=2, output_padding=(2, 1)),
    dict(kernel_size=(4, 1), stride=1, padding=0),
]


@pytest.mark.parametrize("kwargs", CONV_T_PORTS, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_conv_transpose_weights_port_between_builtins_both_ways(kwargs):
    torch_conv = torch.nn.ConvTranspose2d(3, 2, **kwargs, dtype=torch.float64)
    flax_conv = nnx.ConvTranspose(**nnx_conv_transpose_kwargs(torch_conv), param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_conv, flax_conv)
    x = np_rng().standard_normal((2, 3, 4, 5))
    expected = torch_conv(torch.from_numpy(x)).detach().numpy()
    got = np.moveaxis(np.asarray(flax_conv(_nhwc(x))), -1, 1)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    back = torch.nn.ConvTranspose2d(3, 2, **kwargs, dtype=torch.float64)
    nnx_to_torch(flax_conv, back)
    for name, p in torch_conv.state_dict().items():
        assert torch.equal(p, back.state_dict()[name]), name


def test_conv_transpose_weights_port_with_transpose_kernel():
    torch_conv = torch.nn.ConvTranspose2d(3, 2, (3, 2), stride=2, padding=1, output_padding=1, dtype=torch.float64)
    flax_conv = nnx.ConvTranspose(**nnx_conv_transpose_kwargs(torch_conv), transpose_kernel=True,
                                  param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    state = {k: v.numpy() for k, v in torch_conv.state_dict().items()}
    for path, value in conv_transpose2d_map(transpose_kernel=True).to_nnx(state).items():
        getattr(flax_conv, path).set_value(jnp.asarray(value))
    x = np_rng().standard_normal((2, 3, 4, 5))
    expected = torch_conv(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.moveaxis(np.asarray(flax_conv(_nhwc(x))), -1, 1), expected, rtol=1e-12, atol=1e-12)


def test_grouped_conv_transpose_has_no_flax_counterpart():
    with pytest.raises(ValueError, match="`groups`"):
        torch_to_nnx(torch.nn.ConvTranspose2d(4, 2, 3, groups=2), nnx.ConvTranspose(4, 2, 3, rngs=nnx.Rngs(0)))
