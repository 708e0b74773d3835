"""Shape layers: gradcheck, check_grads, and drop-in parity with the built-ins."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads

import jax_layers
import torch_layers
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
