"""Activations: gradcheck, check_grads, and drop-in parity with the built-ins."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.test_util import check_grads

from crosscheck.draw import away_from, normal
from crosscheck.mutants import all_mutants
from crosscheck.registry import select
from helpers import np_rng, t64
from jax_layers import activation as JA
from torch_layers import activation as TA


def _jax_softplus_ref(x, beta, threshold):
    return jnp.where(beta * x > threshold, x, jax.nn.softplus(beta * x) / beta)


# id: (ours torch fn, built-in torch fn, torch kwargs, ours jax fn, built-in jax fn, jax kwargs, draw)
PAIRS = {
    "sigmoid": (TA.sigmoid, torch.sigmoid, {}, JA.sigmoid, jax.nn.sigmoid, {}, normal()),
    "tanh": (TA.tanh, torch.tanh, {}, JA.tanh, jax.nn.tanh, {}, normal(2.0)),
    "relu": (TA.relu, F.relu, {}, JA.relu, jax.nn.relu, {}, away_from((0.0,), 0.1)),
    "leaky_relu": (TA.leaky_relu, F.leaky_relu, {}, JA.leaky_relu, jax.nn.leaky_relu, {}, away_from((0.0,), 0.1)),
    "leaky_relu-slope": (TA.leaky_relu, F.leaky_relu, {"negative_slope": 0.3}, JA.leaky_relu, jax.nn.leaky_relu,
                         {"negative_slope": 0.3}, away_from((0.0,), 0.1)),
    "elu": (TA.elu, F.elu, {}, JA.elu, jax.nn.elu, {}, away_from((0.0,), 0.1, 2.0)),
    "elu-alpha": (TA.elu, F.elu, {"alpha": 0.7}, JA.elu, jax.nn.elu, {"alpha": 0.7}, away_from((0.0,), 0.1, 2.0)),
    "gelu": (TA.gelu, F.gelu, {}, JA.gelu, jax.nn.gelu, {"approximate": False}, normal(2.0)),
    "gelu-tanh": (TA.gelu, F.gelu, {"approximate": "tanh"}, JA.gelu, jax.nn.gelu, {"approximate": True}, normal(2.0)),
    "silu": (TA.silu, F.silu, {}, JA.silu, jax.nn.silu, {}, normal(3.0)),
    "softplus": (TA.softplus, F.softplus, {}, JA.softplus, _jax_softplus_ref, {"beta": 1.0, "threshold": 20.0},
                 normal(3.0)),
    "softplus-beta": (TA.softplus, F.softplus, {"beta": 2.0, "threshold": 3.0}, JA.softplus, _jax_softplus_ref,
                      {"beta": 2.0, "threshold": 3.0}, away_from((1.5,), 0.1, 2.0)),
}

# (ours torch module, built-in torch module, kwargs, ours nnx module, jax kwargs)
MODULES = {
    "Sigmoid": (TA.Sigmoid, torch.nn.Sigmoid, {}, JA.Sigmoid, {}),
    "Tanh": (TA.Tanh, torch.nn.Tanh, {}, JA.Tanh, {}),
    "ReLU": (TA.ReLU, torch.nn.ReLU, {}, JA.ReLU, {}),
    "LeakyReLU": (TA.LeakyReLU, torch.nn.LeakyReLU, {"negative_slope": 0.2}, JA.LeakyReLU, {"negative_slope": 0.2}),
    "ELU": (TA.ELU, torch.nn.ELU, {"alpha": 0.5}, JA.ELU, {"alpha": 0.5}),
    "GELU": (TA.GELU, torch.nn.GELU, {}, JA.GELU, {"approximate": False}),
    "GELU-tanh": (TA.GELU, torch.nn.GELU, {"approximate": "tanh"}, JA.GELU, {}),
    "SiLU": (TA.SiLU, torch.nn.SiLU, {}, JA.SiLU, {}),
    "Softplus": (TA.Softplus, torch.nn.Softplus, {"beta": 2.0, "threshold": 3.0}, JA.Softplus,
                 {"beta": 2.0, "threshold": 3.0}),
}


def _x(name, shape=(3, 1, 4), seed=0):
    return PAIRS[name][6](np_rng(seed), shape)


@pytest.mark.parametrize("name", list(PAIRS))
def test_torch_gradcheck(name):
    fn, kw = PAIRS[name][0], PAIRS[name][2]
    x = t64(_x(name))
    assert torch.autograd.gradcheck(lambda v: fn(v, **kw), (x,))
    assert torch.autograd.gradgradcheck(lambda v: fn(v, **kw), (x,))


@pytest.mark.parametrize("name", list(PAIRS))
def test_jax_check_grads(name):
    fn, kw = PAIRS[name][3], PAIRS[name][5]
    check_grads(lambda v: fn(v, **kw), (jnp.asarray(_x(name)),), order=2, modes=["rev"])


@pytest.mark.parametrize("name", list(PAIRS))
def test_drop_in_parity(name):
    ours_t, builtin_t, t_kw, ours_j, builtin_j, j_kw, _ = PAIRS[name]
    x = _x(name, (2, 5), seed=2)
    xa, xb = t64(x), t64(x)
    ya, yb = ours_t(xa, **t_kw), builtin_t(xb, **t_kw)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    (ya * ya).sum().backward()
    (yb * yb).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    xj = jnp.asarray(x)
    np.testing.assert_allclose(ours_j(xj, **j_kw), builtin_j(xj, **j_kw), rtol=1e-12, atol=1e-12)
    ga = jax.grad(lambda v: jnp.sum(ours_j(v, **j_kw) ** 2))(xj)
    gb = jax.grad(lambda v: jnp.sum(builtin_j(v, **j_kw) ** 2))(xj)
    np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-12)
    # The same function on both sides, with the options spelled each framework's way.
    np.testing.assert_allclose(ours_j(xj, **j_kw), ya.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(PAIRS))
def test_torch_empty_unbatched_and_scalar_like_builtin(name):
    ours, builtin, kw = PAIRS[name][0], PAIRS[name][1], PAIRS[name][2]
    for shape in ((0, 3), (4,), ()):
        x = t64(_x(name, shape, seed=1))
        y = ours(x, **kw)
        torch.testing.assert_close(y, builtin(x, **kw), rtol=0, atol=0)
        y.sum().backward()
        assert x.grad.shape == x.shape and x.grad.dtype == x.dtype


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_torch_low_precision_forward_is_the_builtin(name, dtype):
    ours, builtin, kw = PAIRS[name][0], PAIRS[name][1], PAIRS[name][2]
    x = torch.tensor(_x(name, (3, 7)), dtype=dtype)
    torch.testing.assert_close(ours(x, **kw), builtin(x, **kw), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(MODULES))
def test_modules_are_drop_ins(name):
    ours_cls, builtin_cls, kw, ours_nnx, j_kw = MODULES[name]
    ours, builtin = ours_cls(**kw), builtin_cls(**kw)
    assert repr(ours).split("(", 1)[1] == repr(builtin).split("(", 1)[1]
    x = np_rng(3).standard_normal((2, 1, 5)) * 2
    xa, xb = t64(x), t64(x)
    ya, yb = ours(xa), builtin(xb)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours_nnx(**j_kw)(jnp.asarray(x)), ya.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["ReLU", "LeakyReLU", "ELU", "SiLU"])
def test_inplace_is_accepted_and_computed_out_of_place(name):
    ours_cls, builtin_cls, kw, _, _ = MODULES[name]
    x = torch.randn(3, 4)
    before = x.clone()
    torch.testing.assert_close(ours_cls(**kw, inplace=True)(x), builtin_cls(**kw)(before))
    assert torch.equal(x, before)
    assert repr(ours_cls(**kw, inplace=True)) == repr(builtin_cls(**kw, inplace=True))


def test_torch_double_backward_matches_builtin():
    x = _x("gelu-tanh", (4, 3))
    xa, xb = t64(x), t64(x)
    for v, fn in ((xa, TA.gelu), (xb, F.gelu)):
        (g,) = torch.autograd.grad(fn(v, approximate="tanh").sum(), v, create_graph=True)
        (g * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)


def test_softplus_switches_like_torch_past_the_threshold():
    x = torch.tensor([-30.0, 0.0, 1.4, 1.6, 30.0], dtype=torch.float64, requires_grad=True)
    y = TA.softplus(x, beta=2.0, threshold=3.0)
    torch.testing.assert_close(y, F.softplus(x, beta=2.0, threshold=3.0), rtol=0, atol=0)
    xj = jnp.asarray(x.detach().numpy())
    np.testing.assert_allclose(JA.softplus(xj, beta=2.0, threshold=3.0), y.detach().numpy(), rtol=1e-12)
    # Default JAX softplus never switches, like jax.nn.softplus.
    np.testing.assert_allclose(JA.softplus(xj), jax.nn.softplus(xj), rtol=1e-12)
    g = jax.grad(lambda v: jnp.sum(JA.softplus(v, beta=2.0, threshold=3.0)))(xj)
    np.testing.assert_allclose(g[-2:], [1.0, 1.0])


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`approximate`"):
        TA.gelu(torch.randn(3), approximate="erf")
    with pytest.raises(ValueError, match="`approximate`"):
        TA.GELU(approximate="exact")
    # torch's spelling passed to JAX would silently mean "approximate" ("none" is truthy).
    with pytest.raises(ValueError, match="`approximate`"):
        JA.gelu(jnp.ones(3), approximate="none")
    with pytest.raises(ValueError, match="`beta`"):
        JA.softplus(jnp.ones(3), beta=0.0)


MUTANTS = [m for m in all_mutants() if m.case in {c.name for c in select(["activation"])}]
