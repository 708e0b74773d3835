"""Softmax and log-softmax: gradcheck, check_grads, and drop-in parity with the built-ins."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.test_util import check_grads

from crosscheck.mutants import all_mutants
from crosscheck.registry import select
from helpers import np_rng, t64

# `torch_layers.softmax` may be the re-exported function, so reach the modules by name.
TS = importlib.import_module("torch_layers.softmax")
JS = importlib.import_module("jax_layers.softmax")

NAMES = ["softmax", "log_softmax"]
# (shape, dim): the last dim, a leading one, a middle one next to a size-1 dim.
SHAPES = [((4, 1, 6), -1), ((4, 2, 1, 3), 0), ((3, 5, 1, 2), 1), ((5,), 0)]


def _x(shape, seed=0):
    return 2 * np_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape,dim", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_torch_gradcheck(name, shape, dim):
    f = lambda v: getattr(TS, name)(v, dim)  # noqa: E731
    x = t64(_x(shape))
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("shape,dim", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_jax_check_grads(name, shape, dim):
    check_grads(lambda v: getattr(JS, name)(v, axis=dim), (jnp.asarray(_x(shape)),), order=2, modes=["rev"])


@pytest.mark.parametrize("shape,dim", SHAPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_drop_in_parity(name, shape, dim):
    x = _x(shape, seed=1)
    w = np_rng(2).standard_normal(shape)
    xa, xb = t64(x), t64(x)
    ya, yb = getattr(TS, name)(xa, dim), getattr(F, name)(xb, dim)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    (ya * torch.from_numpy(w)).sum().backward()
    (yb * torch.from_numpy(w)).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    np.testing.assert_allclose(getattr(JS, name)(xj, axis=dim), getattr(jax.nn, name)(xj, axis=dim), rtol=1e-12)
    np.testing.assert_allclose(getattr(JS, name)(xj, axis=dim), yb.detach().numpy(), rtol=1e-12)
    ga = jax.grad(lambda v: jnp.sum(getattr(JS, name)(v, axis=dim) * wj))(xj)
    gb = jax.grad(lambda v: jnp.sum(getattr(jax.nn, name)(v, axis=dim) * wj))(xj)
    np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ga, xb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_jax_several_axes_and_where_like_builtin(name):
    x = jnp.asarray(_x((3, 4, 2)))
    where = jnp.asarray(np_rng(3).random((3, 4, 2)) < 0.7).at[:, 0, :].set(True)
    ours, builtin = getattr(JS, name), getattr(jax.nn, name)
    for kw in ({"axis": (0, 2)}, {"axis": None}, {"axis": 1, "where": where}):
        np.testing.assert_allclose(ours(x, **kw), builtin(x, **kw), rtol=1e-12)
        w = jnp.asarray(np_rng(4).standard_normal((3, 4, 2)))
        masked = (lambda y: jnp.where(where, y, 0)) if "where" in kw else (lambda y: y)  # noqa: E731
        ga = jax.grad(lambda v: jnp.sum(masked(ours(v, **kw)) * w))(x)
        gb = jax.grad(lambda v: jnp.sum(masked(builtin(v, **kw)) * w))(x)
        np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-12)
    check_grads(lambda v: jnp.where(where, ours(v, axis=1, where=where), 0), (x,), order=2, modes=["rev"])


@pytest.mark.parametrize("name", NAMES)
def test_torch_empty_scalar_and_dtype_like_builtin(name):
    ours, builtin = getattr(TS, name), getattr(F, name)
    for x in (torch.randn(0, 3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)):
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(x1, -1), builtin(x2, -1)
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)
        ya.sum().backward()
        yb.sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad)
    x = torch.randn(2, 3, dtype=torch.float32)
    y = ours(x, 1, dtype=torch.float64)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, builtin(x, 1, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_torch_low_precision_forward_is_the_builtin(name, dtype):
    x = torch.tensor(_x((3, 7)), dtype=dtype)
    torch.testing.assert_close(getattr(TS, name)(x, 1), getattr(F, name)(x, 1), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_dim_none_follows_torch_legacy_rule(name, ndim):
    x = torch.randn((2, 3, 4, 5)[:ndim])
    with pytest.warns(UserWarning, match="Implicit dimension choice") as ours_warned:
        ya = getattr(TS, name)(x)
    with pytest.warns(UserWarning, match="Implicit dimension choice") as builtin_warned:
        yb = getattr(F, name)(x)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    assert str(ours_warned[0].message) == str(builtin_warned[0].message)
    # The warning points at the caller, as the built-in's does.
    assert ours_warned[0].filename == __file__


@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax"])
def test_modules_are_drop_ins(cls):
    ours, builtin = getattr(TS, cls)(dim=1), getattr(torch.nn, cls)(dim=1)
    assert repr(ours) == repr(builtin)
    x = _x((3, 5, 1, 2))
    xa, xb = t64(x), t64(x)
    ya, yb = ours(xa), builtin(xb)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    (ya * ya).sum().backward()
    (yb * yb).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(getattr(JS, cls)(axis=1)(jnp.asarray(x)), yb.detach().numpy(), rtol=1e-12)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        torch.testing.assert_close(getattr(TS, cls)()(xa), getattr(torch.nn, cls)()(xb))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`dim`"):
        TS.softmax(torch.randn(2, 3), 2)
    with pytest.raises(ValueError, match="`dim`"):
        TS.log_softmax(torch.randn(2, 3), -3)
    with pytest.raises(ValueError, match="`axis`"):
        JS.softmax(jnp.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="`axis`"):
        JS.log_softmax(jnp.ones((2, 3)), axis=(0, -2))
    with pytest.raises(ValueError, match="`where`"):
        JS.softmax(jnp.ones((2, 3)), where=jnp.ones((4, 3), bool))


MUTANTS = [m for m in all_mutants() if m.case in {c.name for c in select(["softmax"])}]
