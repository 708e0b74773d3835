"""Pooling: gradchecks, drop-in parity with the built-ins.

Max pool inputs are permutations of a grid `k / 8` (`crosscheck.cases.pool.distinct_grid`):
no ties, so the winner of every window, and so the gradient, is unambiguous. The planted bugs
(`crosscheck/mutants/pool.py`) run in tests/test_mutants.py with every other mutant.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from jax import lax
from jax.test_util import check_grads

from crosscheck.cases.pool import distinct_grid
from helpers import np_rng, t64
from jax_layers import pool as JP
from torch_layers import pool as TP


def _distinct(shape, seed=0):
    return distinct_grid(np_rng(seed), (1, *shape))[0]


# (x shape, kwargs): overlapping windows, padding, dilation, ceil mode, unbatched.
MAX = [
    ((1, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 6, 5), dict(kernel_size=(3, 2), stride=1)),
    ((2, 1, 7, 8), dict(kernel_size=2, stride=1, padding=1, dilation=2)),
    ((1, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((3, 7, 6), dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0))),
]
AVG = [
    ((1, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 5, 7), dict(kernel_size=(2, 3), stride=(1, 2), padding=1, count_include_pad=False)),
    ((3, 1, 6, 4), dict(kernel_size=2)),
    ((1, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 8, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((1, 2, 7, 6), dict(kernel_size=(3, 2), stride=2, padding=1, divisor_override=5)),
    ((3, 7, 6), dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0))),
]
TORCH = [("max_pool2d", c) for c in MAX] + [("avg_pool2d", c) for c in AVG]


def _ids(case):
    op, (shape, kwargs) = case
    return f"{op}-{shape}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}"


def _input(op, shape):
    return t64(_distinct(shape) if op == "max_pool2d" else np_rng().standard_normal(shape))


@pytest.mark.parametrize("case", TORCH, ids=_ids)
def test_torch_gradcheck(case):
    op, (shape, kwargs) = case
    f = lambda x: getattr(TP, op)(x, **kwargs)  # noqa: E731
    x = _input(op, shape)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("case", TORCH, ids=_ids)
def test_torch_functional_and_module_are_drop_ins(case):
    op, (shape, kwargs) = case
    module = {"max_pool2d": "MaxPool2d", "avg_pool2d": "AvgPool2d"}[op]
    pairs = [(getattr(TP, op), getattr(F, op)), (getattr(TP, module)(**kwargs), getattr(torch.nn, module)(**kwargs))]
    for ours, theirs in pairs:
        xa, xb = _input(op, shape), _input(op, shape)
        call = (lambda f, x: f(x, **kwargs)) if ours is getattr(TP, op) else (lambda f, x: f(x))
        ya, yb = call(ours, xa), call(theirs, xb)
        torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
        ct = torch.randn_like(ya)
        torch.testing.assert_close(torch.autograd.grad(ya, xa, ct)[0], torch.autograd.grad(yb, xb, ct)[0],
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,kwargs", MAX, ids=[_ids(("max", c)) for c in MAX])
def test_torch_max_pool_indices_like_builtin(shape, kwargs):
    x = _input("max_pool2d", shape)
    out, idx = TP.max_pool2d(x, return_indices=True, **kwargs)
    ref, ref_idx = F.max_pool2d(x, return_indices=True, **kwargs)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    out, idx = TP.MaxPool2d(return_indices=True, **kwargs)(x)
    assert torch.equal(idx, ref_idx)


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_torch_empty_batch_like_builtin(op):
    x = torch.randn(0, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    y = getattr(TP, op)(x, 3, 2, 1)
    assert y.shape == getattr(F, op)(x, 3, 2, 1).shape
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("call,match", [
    (lambda: TP.max_pool2d(torch.randn(1, 2, 5, 5), 2, padding=2), "`padding`"),
    (lambda: TP.max_pool2d(torch.randn(1, 2, 5, 5), 0), "`kernel_size`"),
    (lambda: TP.avg_pool2d(torch.randn(1, 2, 5, 5), 2, stride=(1, 2, 3)), "`stride`"),
    (lambda: TP.avg_pool2d(torch.randn(1, 2, 5, 5), 2, divisor_override=0), "`divisor_override`"),
    (lambda: TP.avg_pool2d(torch.randn(5, 5), 2), "`input`"),
    (lambda: JP.max_pool(jnp.ones((1, 5, 5, 2)), (2, 2), padding="FULL"), "`padding`"),
    (lambda: JP.avg_pool(jnp.ones((1, 5, 5, 2)), (2, 2), strides=(1,)), "`strides`"),
    (lambda: JP.max_pool(jnp.ones((5, 2)), (2, 2)), "`inputs`"),
], ids=["padding", "kernel_size", "stride", "divisor_override", "input", "jax-padding", "jax-strides", "jax-inputs"])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- JAX ----------------------------------------------------------------------------------

# (x shape, window, strides, padding): overlap, padding, SAME, stride None (1), unbatched,
# two batch dims, 1-d.
JAX = [
    ((2, 7, 6, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((1, 6, 5, 2), (3, 2), (1, 1), "VALID"),
    ((2, 7, 8, 1), (2, 2), None, "SAME"),
    ((7, 6, 3), (2, 3), (2, 1), ((1, 1), (0, 0))),
    ((2, 1, 5, 6, 2), (3, 2), (2, 2), ((1, 1), (1, 0))),
    ((2, 9, 3), (3,), (2,), ((1, 2),)),
]


def _jax_ids(c):
    return f"{c[0]}-w{c[1]}-s{c[2]}-p{c[3]}"


def _flax(fn, x, window, *args):
    # Flax's pool adds only one batch dim to explicit padding: flatten leading dims first.
    lead = x.shape[: x.ndim - len(window) - 1]
    if len(lead) <= 1:
        return fn(x, window, *args)
    y = fn(x.reshape(-1, *x.shape[len(lead):]), window, *args)
    return y.reshape(*lead, *y.shape[1:])


def _same_vjp(ours, ref, x):
    ya, vjp_a = jax.vjp(ours, x)
    yb, vjp_b = jax.vjp(ref, x)
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-12)
    ct = jnp.asarray(np_rng(1).standard_normal(ya.shape))
    np.testing.assert_allclose(vjp_a(ct)[0], vjp_b(ct)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", JAX, ids=_jax_ids)
def test_jax_max_pool_check_grads_and_matches_flax(case):
    shape, window, strides, padding = case
    x = jnp.asarray(_distinct(shape))
    ours = lambda x: JP.max_pool(x, window, strides, padding)  # noqa: E731
    check_grads(ours, (x,), order=2, modes=["rev"])
    _same_vjp(ours, lambda x: _flax(nnx.max_pool, x, window, strides, padding), x)
    np.testing.assert_array_equal(JP.MaxPool(window, strides, padding)(x), ours(x))


@pytest.mark.parametrize("count_include_pad", [True, False], ids=["include-pad", "exclude-pad"])
@pytest.mark.parametrize("case", JAX, ids=_jax_ids)
def test_jax_avg_pool_check_grads_and_matches_flax(case, count_include_pad):
    shape, window, strides, padding = case
    x = jnp.asarray(np_rng().standard_normal(shape))
    ours = lambda x: JP.avg_pool(x, window, strides, padding, count_include_pad)  # noqa: E731
    check_grads(ours, (x,), order=2, modes=["rev"])
    _same_vjp(ours, lambda x: _flax(nnx.avg_pool, x, window, strides, padding, count_include_pad), x)
    np.testing.assert_array_equal(JP.AvgPool(window, strides, padding, count_include_pad)(x), ours(x))


def test_jax_max_pool_window_dilation():
    x = jnp.asarray(_distinct((2, 7, 8, 1)))
    ours = lambda x: JP.max_pool(x, (2, 2), (1, 1), ((1, 1), (1, 1)), window_dilation=(2, 2))  # noqa: E731
    check_grads(ours, (x,), order=2, modes=["rev"])
    # The forward against lax (JAX has no VJP for a dilated max window); the gradient against torch.
    ref = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)),
                            window_dilation=(1, 2, 2, 1))
    y, vjp = jax.vjp(ours, x)
    np.testing.assert_array_equal(y, ref)
    xt = t64(np.moveaxis(np.asarray(x), -1, 1))
    yt = F.max_pool2d(xt, 2, 1, 1, 2)
    yt.backward(torch.from_numpy(np.moveaxis(np.ones(y.shape), -1, 1)))
    np.testing.assert_array_equal(np.moveaxis(np.asarray(vjp(jnp.ones(y.shape))[0]), -1, 1), xt.grad.numpy())


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_jax_pools_keep_the_dtype(dtype):
    x = jnp.asarray(_distinct((2, 7, 6, 3)), dtype)
    pools = [lambda x: JP.max_pool(x, (3, 3), (2, 2), "SAME"), lambda x: JP.avg_pool(x, (3, 3), (2, 2), "SAME", False)]
    for f in pools:
        y, vjp = jax.vjp(f, x)
        assert y.dtype == dtype and vjp(jnp.ones_like(y))[0].dtype == dtype
