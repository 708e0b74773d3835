"""Dropout: gradcheck, check_grads, agreement under one mask, and drop-in parity with the built-ins."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from jax.test_util import check_grads

from crosscheck.mutants import all_mutants
from crosscheck.registry import select
from helpers import np_rng, t64

# `torch_layers.dropout` may be the re-exported function, so reach the modules by name.
TD = importlib.import_module("torch_layers.dropout")
JD = importlib.import_module("jax_layers.dropout")

# (input shape, mask shape, p, mask dtype)
MASKS = [
    ((3, 1, 5), (3, 1, 5), 0.25, bool),
    ((2, 4, 1), (2, 4, 1), 0.6, float),
    ((4, 3, 2), (4, 1, 2), 0.25, bool),
    ((5,), (5,), 0.5, bool),
]


def _draw(shape, mask_shape, p, dtype, seed=0):
    rng = np_rng(seed)
    return rng.standard_normal(shape), (rng.random(mask_shape) >= p).astype(dtype)


@pytest.mark.parametrize("shape,mask_shape,p,dtype", MASKS, ids=str)
def test_torch_gradcheck(shape, mask_shape, p, dtype):
    x, mask = _draw(shape, mask_shape, p, dtype)
    m = torch.from_numpy(mask)
    f = lambda v: TD.dropout(v, p, mask=m)  # noqa: E731
    assert torch.autograd.gradcheck(f, (t64(x),))
    assert torch.autograd.gradgradcheck(f, (t64(x),))


@pytest.mark.parametrize("shape,mask_shape,p,dtype", MASKS, ids=str)
def test_jax_check_grads(shape, mask_shape, p, dtype):
    x, mask = _draw(shape, mask_shape, p, dtype)
    check_grads(lambda v: JD.dropout(v, p, jnp.asarray(mask)), (jnp.asarray(x),), order=2, modes=["rev"])


@pytest.mark.parametrize("shape,mask_shape,p,dtype", MASKS, ids=str)
def test_same_mask_same_result_on_both_sides(shape, mask_shape, p, dtype):
    x, mask = _draw(shape, mask_shape, p, dtype, seed=1)
    w = np_rng(2).standard_normal(shape)
    xt = t64(x)
    yt = TD.Dropout(p)(xt, torch.from_numpy(mask))
    (yt * torch.from_numpy(w)).sum().backward()
    layer = JD.Dropout(p, rngs=nnx.Rngs(dropout=0))
    yj, gj = jax.value_and_grad(lambda v: jnp.sum(layer(v, mask=jnp.asarray(mask)) * w))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x), mask=jnp.asarray(mask))), yt.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(gj), xt.grad.numpy(), rtol=1e-15)
    keep = np.broadcast_to(mask != 0, shape)
    np.testing.assert_array_equal(xt.grad.numpy()[~keep], 0)
    np.testing.assert_allclose(xt.grad.numpy()[keep], w[keep] / (1 - p), rtol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_torch_same_seed_same_result_as_builtin(dtype):
    x = torch.randn(4, 1, 6).to(dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(7)
    ya = TD.dropout(xa, 0.3)
    torch.manual_seed(7)
    yb = F.dropout(xb, 0.3)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)
    torch.manual_seed(7)
    ym = TD.Dropout(0.3)(x)
    torch.manual_seed(7)
    torch.testing.assert_close(ym, torch.nn.Dropout(0.3)(x), rtol=0, atol=0)


def test_torch_module_and_edge_cases_like_builtin():
    ours, builtin = TD.Dropout(0.2), torch.nn.Dropout(0.2)
    assert repr(ours) == repr(builtin)
    assert repr(TD.Dropout(0.2, inplace=True)) == repr(torch.nn.Dropout(0.2, inplace=True))
    x = torch.randn(3, 4)
    ours.eval()
    assert ours(x) is x and ours(x, torch.zeros(3, 4, dtype=torch.bool)) is x
    assert TD.dropout(x, 0.5, training=False) is x
    assert TD.dropout(x, 0.0) is x
    torch.testing.assert_close(TD.dropout(x, 1.0), F.dropout(x, 1.0))
    torch.testing.assert_close(TD.dropout(x, 1.0, mask=torch.ones(3, 4)), torch.zeros(3, 4))
    empty = torch.randn(0, 3, requires_grad=True)
    assert TD.dropout(empty, 0.5).shape == F.dropout(empty, 0.5).shape == (0, 3)
    before = x.clone()
    TD.dropout(x, 0.5, inplace=True)
    assert torch.equal(x, before)  # inplace is computed out of place
    for v in (torch.randn(5), torch.tensor(2.0)):  # unbatched and 0-dim
        torch.manual_seed(1)
        ya = TD.dropout(v, 0.4)
        torch.manual_seed(1)
        torch.testing.assert_close(ya, F.dropout(v, 0.4), rtol=0, atol=0)


def test_torch_floating_mask_gets_no_gradient_even_alone():
    x = t64(np_rng(0).standard_normal((3, 4)), requires_grad=False)
    mask = t64((np_rng(1).random((3, 4)) >= 0.25).astype(float))
    y = TD.dropout(x, 0.25, mask=mask)
    assert y.requires_grad  # the backward runs, for the mask alone
    y.sum().backward()
    assert mask.grad is None and x.grad is None


def test_nnx_module_same_rngs_same_result_as_builtin():
    x = jnp.asarray(np_rng(4).standard_normal((4, 3, 5)))
    for kw in ({}, {"broadcast_dims": (1,)}):
        ours, builtin = JD.Dropout(0.3, **kw, rngs=nnx.Rngs(dropout=5)), nnx.Dropout(0.3, **kw, rngs=nnx.Rngs(dropout=5))
        for _ in range(2):  # the stream advances the same way
            np.testing.assert_array_equal(ours(x), builtin(x))
        ga = jax.grad(lambda v: jnp.sum(JD.Dropout(0.3, **kw, rngs=nnx.Rngs(dropout=6))(v) ** 2))(x)
        gb = jax.grad(lambda v: jnp.sum(nnx.Dropout(0.3, **kw, rngs=nnx.Rngs(dropout=6))(v) ** 2))(x)
        np.testing.assert_allclose(ga, gb, rtol=1e-15)
    key = jax.random.key(3)
    np.testing.assert_array_equal(JD.Dropout(0.3)(x, rngs=key), nnx.Dropout(0.3)(x, rngs=key))
    layer = JD.Dropout(0.3, deterministic=True)
    assert layer(x) is x
    assert JD.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(JD.Dropout(1.0)(x), jnp.zeros_like(x))
    layer.set_view(deterministic=False)
    with pytest.raises(ValueError, match="`rngs`"):
        layer(x)
    with pytest.raises(ValueError, match="`deterministic`"):
        JD.Dropout(0.3, deterministic=None)(x)


def test_drop_rate_without_a_mask_is_about_p():
    p, n = 0.3, 40_000
    # The dropped count is binomial(n, p): allow 5 standard deviations.
    bound = 5 * np.sqrt(p * (1 - p) / n)
    torch.manual_seed(0)
    yt = TD.Dropout(p)(torch.ones(n, dtype=torch.float64))
    yj = np.asarray(JD.Dropout(p, rngs=nnx.Rngs(dropout=0))(jnp.ones(n)))
    for y in (yt.numpy(), yj):
        assert abs(np.mean(y == 0) - p) < bound
        np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-15)
        assert abs(y.mean() - 1) < 5 * np.sqrt(p / (1 - p) / n)  # unbiased in expectation


def test_bad_arguments_name_the_argument():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="`p`"):
        TD.dropout(x, 1.5)
    with pytest.raises(ValueError, match="`p`"):
        TD.Dropout(-0.1)
    with pytest.raises(ValueError, match="`mask`"):
        TD.dropout(x, 0.5, mask=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="`mask`"):
        TD.dropout(x, 0.5, mask=torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="`rate`"):
        JD.Dropout(1.2)
    with pytest.raises(ValueError, match="`rate`"):
        JD.dropout(jnp.ones((2, 3)), -0.5, jnp.ones((2, 3), bool))
    with pytest.raises(ValueError, match="`mask`"):
        JD.dropout(jnp.ones((2, 3)), 0.5, jnp.ones((2, 1, 3), bool))
    with pytest.raises(ValueError, match="`rngs`"):
        JD.Dropout(0.5, rngs=0)


MUTANTS = [m for m in all_mutants() if m.case in {c.name for c in select(["dropout"])}]
