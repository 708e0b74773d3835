"""Activations: gradcheck, check_grads, and drop-in parity with the built-ins."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads

import jax_layers
import torch_layers
from helpers import np_rng, t64

# (ours torch fn, built-in torch fn, ours jax fn, built-in jax fn)
PAIRS = {
    "sigmoid": (torch_layers.sigmoid, torch.sigmoid, jax_layers.sigmoid, jax.nn.sigmoid),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_torch_gradcheck(name):
    x = t64(np_rng().standard_normal((3, 1, 4)))
    assert torch.autograd.gradcheck(PAIRS[name][0], (x,))
    assert torch.autograd.gradgradcheck(PAIRS[name][0], (x,))


@pytest.mark.parametrize("name", list(PAIRS))
def test_jax_check_grads(name):
    check_grads(PAIRS[name][2], (jnp.asarray(np_rng().standard_normal((3, 1, 4))),), order=2, modes=["rev"])


@pytest.mark.parametrize("name", list(PAIRS))
def test_drop_in_parity(name):
    ours_t, builtin_t, ours_j, builtin_j = PAIRS[name]
    x = np_rng(2).standard_normal((2, 5))
    xa, xb = t64(x), t64(x)
    ours_t(xa).sum().backward()
    builtin_t(xb).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    ga = jax.grad(lambda v: jnp.sum(ours_j(v)))(jnp.asarray(x))
    gb = jax.grad(lambda v: jnp.sum(builtin_j(v)))(jnp.asarray(x))
    np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-12)


def test_modules():
    x = torch.randn(2, 3)
    torch.testing.assert_close(torch_layers.Sigmoid()(x), torch.nn.Sigmoid()(x))
    xj = jnp.asarray(np.asarray(x))
    np.testing.assert_allclose(jax_layers.Sigmoid()(xj), jax.nn.sigmoid(xj), rtol=1e-6)
