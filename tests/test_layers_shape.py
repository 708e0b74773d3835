"""Shape layers: gradcheck, check_grads, and drop-in parity with the built-ins."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads

import jax_layers.shape
import torch_layers.shape
from crosscheck.mutants import all_mutants
from crosscheck.registry import select
from helpers import np_rng, t64


@pytest.mark.parametrize("shape", [(4, -1, 1), (-1,), (6, 4)], ids=str)
def test_reshape_gradcheck_and_check_grads(shape):
    x = np_rng().standard_normal((2, 3, 4))
    f = lambda v: torch_layers.reshape(v, shape)  # noqa: E731
    assert torch.autograd.gradcheck(f, (t64(x),))
    assert torch.autograd.gradgradcheck(f, (t64(x),))
    check_grads(lambda v: jax_layers.reshape(v, shape), (jnp.asarray(x),), order=2, modes=["rev"])


def test_reshape_drop_in():
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(torch_layers.reshape(x, (4, -1, 1)), torch.reshape(x, (4, -1, 1)))
    torch.testing.assert_close(torch_layers.Reshape(4, -1, 1)(x), x.reshape(4, -1, 1))
    xj = jnp.asarray(np.asarray(x))
    np.testing.assert_array_equal(jax_layers.Reshape(4, -1, 1)(xj), jnp.reshape(xj, (4, -1, 1)))


def test_reshape_bad_shape_names_the_argument():
    with pytest.raises(ValueError, match="`shape`"):
        torch_layers.reshape(torch.randn(6), (-1, -1))
    with pytest.raises(ValueError, match="`shape`"):
        jax_layers.reshape(jnp.ones(6), (-1, -1))


FLATTEN = [((2, 3, 1, 4), 1, -1), ((3, 4, 2, 1), 1, 2), ((2, 1, 3), 0, -1), ((2, 3), -1, -1), ((), 0, -1)]


@pytest.mark.parametrize("shape,start,end", FLATTEN, ids=str)
def test_flatten_gradcheck_and_check_grads(shape, start, end):
    x = np_rng().standard_normal(shape)
    f = lambda v: torch_layers.shape.flatten(v, start, end)  # noqa: E731
    assert torch.autograd.gradcheck(f, (t64(x),))
    assert torch.autograd.gradgradcheck(f, (t64(x),))
    check_grads(lambda v: jax_layers.shape.flatten(v, start, end), (jnp.asarray(x),), order=2, modes=["rev"])


@pytest.mark.parametrize("shape,start,end", FLATTEN, ids=str)
def test_flatten_drop_in(shape, start, end):
    x = np_rng(1).standard_normal(shape)
    xa, xb = t64(x), t64(x)
    ya, yb = torch_layers.shape.flatten(xa, start, end), torch.flatten(xb, start, end)
    assert ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    w = torch.from_numpy(np_rng(2).standard_normal(tuple(yb.shape)))
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)
    np.testing.assert_array_equal(jax_layers.shape.flatten(jnp.asarray(x), start, end), yb.detach().numpy())


def test_flatten_modules_and_defaults():
    x = torch.randn(2, 3, 1, 4)
    ours, builtin = torch_layers.shape.Flatten(), torch.nn.Flatten()
    assert repr(ours) == repr(builtin)
    torch.testing.assert_close(ours(x), builtin(x))
    torch.testing.assert_close(torch_layers.shape.Flatten(0, 2)(x), torch.nn.Flatten(0, 2)(x))
    torch.testing.assert_close(torch_layers.shape.flatten(x), torch.flatten(x))
    xj = jnp.asarray(x.numpy())
    np.testing.assert_array_equal(jax_layers.shape.Flatten()(xj), builtin(x).numpy())
    np.testing.assert_array_equal(jax_layers.shape.flatten(xj), torch.flatten(x).numpy())
    empty = torch.randn(0, 3, 2, requires_grad=True)
    y = torch_layers.shape.Flatten()(empty)
    assert y.shape == torch.nn.Flatten()(empty).shape == (0, 6)
    y.sum().backward()
    assert empty.grad.shape == (0, 3, 2)


def test_flatten_bad_dims_name_the_argument():
    for mod in (torch_layers.shape, jax_layers.shape):
        x = torch.randn(2, 3, 4) if mod is torch_layers.shape else jnp.ones((2, 3, 4))
        with pytest.raises(ValueError, match="`start_dim`"):
            mod.flatten(x, 3)
        with pytest.raises(ValueError, match="`end_dim`"):
            mod.flatten(x, 0, -4)
        with pytest.raises(ValueError, match="`start_dim`"):
            mod.flatten(x, 2, 1)


# Distinct sizes: a gradient permuted by `dims` instead of its inverse changes shape.
PERMUTE = [((2, 1, 3, 4), (2, 0, 3, 1)), ((3, 4, 2), (-1, 0, -2)), ((2, 3), (1, 0)), ((), ())]


@pytest.mark.parametrize("shape,dims", PERMUTE, ids=str)
def test_permute_gradcheck_and_check_grads(shape, dims):
    x = np_rng().standard_normal(shape)
    f = lambda v: torch_layers.shape.permute(v, dims)  # noqa: E731
    assert torch.autograd.gradcheck(f, (t64(x),))
    assert torch.autograd.gradgradcheck(f, (t64(x),))
    check_grads(lambda v: jax_layers.shape.permute(v, dims), (jnp.asarray(x),), order=2, modes=["rev"])


@pytest.mark.parametrize("shape,dims", PERMUTE, ids=str)
def test_permute_drop_in(shape, dims):
    x = np_rng(1).standard_normal(shape)
    xa, xb = t64(x), t64(x)
    ya, yb = torch_layers.shape.permute(xa, dims), torch.permute(xb, dims)
    assert ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    w = torch.from_numpy(np_rng(2).standard_normal(tuple(yb.shape)))
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)
    np.testing.assert_array_equal(jax_layers.shape.permute(jnp.asarray(x), dims), yb.detach().numpy())
    np.testing.assert_array_equal(jax_layers.shape.Permute(*dims)(jnp.asarray(x)), yb.detach().numpy())
    torch.testing.assert_close(torch_layers.shape.Permute(dims)(xa), yb)


def test_permute_bad_dims_name_the_argument():
    for mod, x in ((torch_layers.shape, torch.randn(2, 3, 4)), (jax_layers.shape, jnp.ones((2, 3, 4)))):
        for dims in ((0, 0, 1), (0, 1), (0, 1, 3), (0, 1, 2.0)):
            with pytest.raises(ValueError, match="`dims`"):
                mod.permute(x, dims)


SHAPE_MUTANTS = [m for m in all_mutants() if m.case in {c.name for c in select(["shape"])}]
