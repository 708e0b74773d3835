"""Blocks: gradcheck through a chain of custom backwards, and parity with built-in modules."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from jax.test_util import check_grads

from crosscheck.convert import torch_to_nnx
from helpers import np_rng, t64
from jax_layers.block import ConvBlock as JaxConvBlock, TransformerMLP as JaxMLP, conv_block as jax_conv_block, transformer_mlp as jax_mlp
from torch_layers.block import ConvBlock, TransformerMLP, conv_block, transformer_mlp


def _mlp_args(rng):
    shapes = [(3, 1, 6), (6,), (6,), (10, 6), (10,), (6, 10), (6,)]
    return [rng.standard_normal(s) for s in shapes]


def _cnn_args(rng):
    shapes = [(2, 3, 5, 7), (4, 3, 3, 2), (4,), (4,), (4,)]
    return [rng.standard_normal(s) for s in shapes]


def test_torch_blocks_gradcheck():
    # Fast mode (random projections of the Jacobian): each layer in the chain already passes
    # the slow, element-by-element gradcheck in its own test file; slow mode on the whole
    # block took minutes for the same verdict.
    args = [t64(a) for a in _mlp_args(np_rng())]
    assert torch.autograd.gradcheck(transformer_mlp, args, fast_mode=True)
    assert torch.autograd.gradgradcheck(transformer_mlp, args, fast_mode=True)
    args = [t64(a) for a in _cnn_args(np_rng())]
    f = lambda *a: conv_block(*a, num_groups=2)  # noqa: E731
    assert torch.autograd.gradcheck(f, args, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, args, fast_mode=True)


def test_jax_blocks_check_grads():
    x, nw, nb, w1, b1, w2, b2 = (jnp.asarray(a) for a in _mlp_args(np_rng()))
    check_grads(jax_mlp, (x, nw, nb, w1.T, b1, w2.T, b2), order=2, modes=["rev"])
    x, w, b, nw, nb = _cnn_args(np_rng())
    args = (jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(w.transpose(2, 3, 1, 0)), *map(jnp.asarray, (b, nw, nb)))
    check_grads(lambda *a: jax_conv_block(*a, num_groups=2), args, order=2, modes=["rev"])


def test_torch_blocks_match_builtin_compositions():
    torch.manual_seed(0)
    ours = TransformerMLP(6, 10, dtype=torch.float64)
    norm, fc1, fc2 = torch.nn.LayerNorm(6, dtype=torch.float64), torch.nn.Linear(6, 10, dtype=torch.float64), torch.nn.Linear(10, 6, dtype=torch.float64)
    for mod, name in ((norm, "norm"), (fc1, "fc1"), (fc2, "fc2")):
        mod.load_state_dict(getattr(ours, name).state_dict())
    x = torch.randn(3, 1, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), x + fc2(torch.nn.functional.gelu(fc1(norm(x)))))
    ours = ConvBlock(3, 4, 2, dtype=torch.float64)
    conv, gn = torch.nn.Conv2d(3, 4, (3, 2), padding=(1, 0), dtype=torch.float64), torch.nn.GroupNorm(2, 4, dtype=torch.float64)
    conv.load_state_dict(ours.conv.state_dict())
    gn.load_state_dict(ours.norm.state_dict())
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch.nn.functional.avg_pool2d(torch.nn.functional.silu(gn(conv(x))), 2))


def test_weights_port_into_the_jax_blocks():
    torch.manual_seed(1)
    t_mlp = TransformerMLP(6, 10, dtype=torch.float64)
    j_mlp = JaxMLP(6, 10, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    for name in ("norm", "fc1", "fc2"):
        torch_to_nnx(getattr(t_mlp, name), getattr(j_mlp, name))
    x = np_rng(2).standard_normal((3, 1, 6))
    np.testing.assert_allclose(j_mlp(jnp.asarray(x)), t_mlp(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    t_cnn = ConvBlock(3, 4, 2, dtype=torch.float64)
    j_cnn = JaxConvBlock(3, 4, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    torch_to_nnx(t_cnn.conv, j_cnn.conv)
    torch_to_nnx(t_cnn.norm, j_cnn.norm)
    x = np_rng(3).standard_normal((2, 3, 5, 7))
    out = j_cnn(jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(out, t_cnn(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
