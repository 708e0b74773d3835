"""Linear: gradcheck, check_grads, and drop-in parity with torch.nn.Linear and flax.nnx.Linear."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.test_util import check_grads

import jax_layers
import torch_layers
from crosscheck.convert import nnx_to_torch, torch_to_nnx
from helpers import np_rng, t64

SHAPES = [((4, 1, 7), 7, 5), ((3, 6), 6, 2), ((5,), 5, 3)]


@pytest.mark.parametrize("x_shape,n_in,n_out", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_torch_gradcheck(x_shape, n_in, n_out, bias):
    rng = np_rng()
    x, w = t64(rng.standard_normal(x_shape)), t64(rng.standard_normal((n_out, n_in)))
    b = t64(rng.standard_normal(n_out)) if bias else None
    args = (x, w, b)
    assert torch.autograd.gradcheck(torch_layers.linear, args)
    assert torch.autograd.gradgradcheck(torch_layers.linear, args)


@pytest.mark.parametrize("x_shape,n_in,n_out", SHAPES, ids=str)
def test_jax_check_grads(x_shape, n_in, n_out):
    rng = np_rng()
    x, k, b = (jnp.asarray(rng.standard_normal(s)) for s in (x_shape, (n_in, n_out), (n_out,)))
    check_grads(jax_layers.linear, (x, k, b), order=2, modes=["rev"])
    check_grads(lambda x, k: jax_layers.linear(x, k), (x, k), order=2, modes=["rev"])


def test_torch_empty_and_unbatched_like_builtin():
    w, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    for x in (torch.randn(0, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)):
        torch.testing.assert_close(torch_layers.linear(x, w, b), torch.nn.functional.linear(x, w, b))
    x = torch.randn(0, 4, dtype=torch.float64, requires_grad=True)
    wg = w.clone().requires_grad_()
    torch_layers.linear(x, wg, b).sum().backward()
    assert x.grad.shape == (0, 4) and torch.equal(wg.grad, torch.zeros_like(w))


def test_torch_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="`input`"):
        torch_layers.linear(torch.randn(2, 3), torch.randn(4, 5))


def test_torch_module_is_a_drop_in():
    torch.manual_seed(0)
    builtin = torch.nn.Linear(7, 5, dtype=torch.float64)
    torch.manual_seed(0)
    ours = torch_layers.Linear(7, 5, dtype=torch.float64)
    # Same init draws in the same order: identical parameters from the same seed.
    assert dict(ours.named_parameters()).keys() == dict(builtin.named_parameters()).keys()
    for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
        assert torch.equal(p, q), name
    ours.load_state_dict(builtin.state_dict())
    x = torch.randn(4, 1, 7, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ours(x1) ** 2).sum().backward()
    (builtin(x2) ** 2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
    for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12, msg=name)
    assert torch_layers.Linear(3, 2, bias=False).bias is None


def test_nnx_module_is_a_drop_in():
    builtin = nnx.Linear(7, 5, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    ours = jax_layers.Linear(7, 5, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(ours.kernel[...], builtin.kernel[...])
    np.testing.assert_array_equal(ours.bias[...], builtin.bias[...])
    x = jnp.asarray(np_rng().standard_normal((4, 1, 7)))

    def loss(model, x):
        return jnp.sum(model(x) ** 2)

    ga = nnx.grad(loss, argnums=(0, 1))(ours, x)
    gb = nnx.grad(loss, argnums=(0, 1))(builtin, x)
    np.testing.assert_allclose(ga[1], gb[1], rtol=1e-12)
    np.testing.assert_allclose(ga[0]["kernel"][...], gb[0]["kernel"][...], rtol=1e-12)
    np.testing.assert_allclose(ga[0]["bias"][...], gb[0]["bias"][...], rtol=1e-12)


def test_weights_port_between_builtins_both_ways():
    torch_lin = torch.nn.Linear(7, 5, dtype=torch.float64)
    flax_lin = nnx.Linear(7, 5, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_lin, flax_lin)
    x = np_rng().standard_normal((3, 7))
    np.testing.assert_allclose(flax_lin(jnp.asarray(x)), torch_lin(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)
    back = torch.nn.Linear(7, 5, dtype=torch.float64)
    nnx_to_torch(flax_lin, back)
    for name, p in torch_lin.state_dict().items():
        assert torch.equal(p, back.state_dict()[name]), name


def test_jax_double_backward_and_forward_over_reverse():
    rng = np_rng(1)
    x, k, b = (jnp.asarray(rng.standard_normal(s)) for s in ((3, 4), (4, 2), (2,)))
    loss = lambda x: jnp.sum(jnp.sin(jax_layers.linear(x, k, b)))  # noqa: E731
    ref = lambda x: jnp.sum(jnp.sin(x @ k + b))  # noqa: E731
    v = jnp.ones_like(x)
    # forward-over-reverse: jvp of the custom gradient
    _, hvp = jax.jvp(jax.grad(loss), (x,), (v,))
    _, hvp_ref = jax.jvp(jax.grad(ref), (x,), (v,))
    np.testing.assert_allclose(hvp, hvp_ref, rtol=1e-12)
