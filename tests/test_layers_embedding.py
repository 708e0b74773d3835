"""Embedding: gradcheck, check_grads, drop-in parity with torch.nn.Embedding and flax.nnx.Embed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from jax.test_util import check_grads

from crosscheck.cases.embedding import jax_read_out, torch_read_out
from crosscheck.convert import nnx_to_torch, torch_to_nnx
from crosscheck.mutants import all_mutants
from crosscheck.registry import select
from helpers import np_rng, t64
from jax_layers.embedding import Embed, embedding as jax_embedding
from torch_layers.embedding import Embedding, embedding as torch_embedding

# (index shape, num_embeddings, dim, padding_idx); at least three lookups per row.
CONFIGS = [((2, 1, 8), 5, 3, None), ((1, 7, 2), 4, 3, 2), ((9, 1, 2), 6, 2, -1), ((12,), 3, 4, None)]
IDS = [f"{'x'.join(map(str, s))}-{n}x{d}-pad{p}" for s, n, d, p in CONFIGS]


def _data(shape, num, dim, padding_idx, seed=0):
    """Indices that repeat and (with a padding row) read it; a normal table."""
    rng = np_rng(seed)
    idx = rng.integers(0, num, shape)
    if padding_idx is not None:
        idx.reshape(-1)[:2] = padding_idx % num
    return idx, rng.standard_normal((num, dim))


def _pad_row(num, padding_idx):
    return None if padding_idx is None else padding_idx % num


@pytest.mark.parametrize("shape,num,dim,padding_idx", CONFIGS, ids=IDS)
def test_torch_gradcheck(shape, num, dim, padding_idx):
    idx, w = _data(shape, num, dim, padding_idx)
    idx = torch.from_numpy(idx)
    # The padding rows' values are read out as zero so that their zero gradient is a derivative
    # (see crosscheck/cases/embedding.py); their cotangents still reach the backward.
    f = lambda v: torch_read_out(idx, torch_embedding(idx, v, padding_idx), _pad_row(num, padding_idx))  # noqa: E731
    assert torch.autograd.gradcheck(f, (t64(w),))
    assert torch.autograd.gradgradcheck(f, (t64(w),))


@pytest.mark.parametrize("shape,num,dim,padding_idx", CONFIGS, ids=IDS)
def test_jax_check_grads(shape, num, dim, padding_idx):
    idx, w = _data(shape, num, dim, padding_idx)
    idx = jnp.asarray(idx)
    f = lambda v: jax_read_out(idx, jax_embedding(idx, v, padding_idx), _pad_row(num, padding_idx))  # noqa: E731
    check_grads(f, (jnp.asarray(w),), order=2, modes=["rev"])


@pytest.mark.parametrize("shape,num,dim,padding_idx", CONFIGS, ids=IDS)
def test_functional_matches_torch_builtin_on_both_sides(shape, num, dim, padding_idx):
    idx, w = _data(shape, num, dim, padding_idx, seed=1)
    ct = np_rng(2).standard_normal((*shape, dim))
    wa, wb = t64(w), t64(w)
    ours = torch_embedding(torch.from_numpy(idx), wa, padding_idx)
    builtin = F.embedding(torch.from_numpy(idx), wb, padding_idx)
    torch.testing.assert_close(ours, builtin, rtol=0, atol=0)
    (ours * torch.from_numpy(ct)).sum().backward()
    (builtin * torch.from_numpy(ct)).sum().backward()
    torch.testing.assert_close(wa.grad, wb.grad, rtol=1e-12, atol=1e-12)
    out, vjp = jax.vjp(lambda v: jax_embedding(jnp.asarray(idx), v, padding_idx), jnp.asarray(w))
    np.testing.assert_array_equal(out, builtin.detach().numpy())
    np.testing.assert_allclose(vjp(jnp.asarray(ct))[0], wb.grad.numpy(), rtol=1e-12, atol=1e-12)
    if padding_idx is not None:
        assert not wa.grad[padding_idx].any()


@pytest.mark.parametrize("padding_idx", [None, 1], ids=["nopad", "pad1"])
def test_torch_scale_grad_by_freq_matches_builtin(padding_idx):
    idx, w = _data((3, 1, 5), 4, 2, padding_idx)
    ct = torch.from_numpy(np_rng(3).standard_normal((3, 1, 5, 2)))
    wa, wb = t64(w), t64(w)
    (torch_embedding(torch.from_numpy(idx), wa, padding_idx, scale_grad_by_freq=True) * ct).sum().backward()
    (F.embedding(torch.from_numpy(idx), wb, padding_idx, scale_grad_by_freq=True) * ct).sum().backward()
    torch.testing.assert_close(wa.grad, wb.grad, rtol=1e-12, atol=1e-12)


def test_unbatched_and_empty_indices_like_builtin():
    w = torch.randn(4, 3, dtype=torch.float64)
    for idx in (torch.tensor(2), torch.zeros(0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long)):
        wa, wb = w.clone().requires_grad_(), w.clone().requires_grad_()
        ours, builtin = torch_embedding(idx, wa, 1), F.embedding(idx, wb, 1)
        assert ours.shape == builtin.shape
        torch.testing.assert_close(ours, builtin)
        ours.sum().backward()
        builtin.sum().backward()
        torch.testing.assert_close(wa.grad, wb.grad)
        out = jax_embedding(jnp.asarray(idx.numpy()), jnp.asarray(w.numpy()), 1)
        np.testing.assert_array_equal(out, builtin.detach().numpy())
        g = jax.grad(lambda v: jnp.sum(jax_embedding(jnp.asarray(idx.numpy()), v, 1)))(jnp.asarray(w.numpy()))
        np.testing.assert_array_equal(g, wb.grad.numpy())


def test_int32_indices():
    w = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[1, 1, 4]], dtype=torch.int32)
    torch.testing.assert_close(torch_embedding(idx, w), F.embedding(idx, w))
    g = jax.grad(lambda v: jnp.sum(jax_embedding(jnp.asarray(idx.numpy()), v)))(jnp.asarray(w.detach().numpy()))
    np.testing.assert_array_equal(g[:, 0], [0, 2, 0, 0, 1])


@pytest.mark.parametrize("padding_idx", [None, 2, -1], ids=["nopad", "pad2", "pad-1"])
def test_torch_module_is_a_drop_in(padding_idx):
    torch.manual_seed(0)
    builtin = torch.nn.Embedding(6, 3, padding_idx=padding_idx, dtype=torch.float64)
    torch.manual_seed(0)
    ours = Embedding(6, 3, padding_idx=padding_idx, dtype=torch.float64)
    # One N(0, 1) draw and the padding row zeroed: identical tables from the same seed.
    assert dict(ours.named_parameters()).keys() == dict(builtin.named_parameters()).keys() == {"weight"}
    assert torch.equal(ours.weight, builtin.weight) and ours.padding_idx == builtin.padding_idx
    with torch.no_grad():
        builtin.weight.normal_()  # a nonzero padding row too: the modules read it as is
    ours.load_state_dict(builtin.state_dict())
    idx = torch.tensor([[0, 5, 2, 5, 5, 1, 2]])
    ct = torch.randn(1, 7, 3, dtype=torch.float64)
    (ours(idx) * ct).sum().backward()
    (builtin(idx) * ct).sum().backward()
    torch.testing.assert_close(ours.weight.grad, builtin.weight.grad, rtol=1e-12, atol=1e-12)
    assert repr(ours).endswith(repr(builtin).removeprefix("Embedding"))


def test_torch_from_pretrained_like_builtin():
    table = torch.randn(4, 2, dtype=torch.float64)
    ours = Embedding.from_pretrained(table, padding_idx=1)
    builtin = torch.nn.Embedding.from_pretrained(table, padding_idx=1)
    assert not ours.weight.requires_grad and ours.padding_idx == builtin.padding_idx
    torch.testing.assert_close(ours(torch.tensor([3, 1])), builtin(torch.tensor([3, 1])))
    assert Embedding.from_pretrained(table, freeze=False).weight.requires_grad


def test_nnx_module_is_a_drop_in():
    builtin = nnx.Embed(5, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    ours = Embed(5, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(ours.embedding[...], builtin.embedding[...])
    # Negative indices count from the end and out-of-range ones read NaN, as in flax.
    idx = jnp.array([[0, 4, 4, -1], [2, 2, 2, 7]])
    np.testing.assert_array_equal(ours(idx), builtin(idx))
    ct = jnp.asarray(np_rng().standard_normal((2, 4, 3)))

    def loss(model):
        return jnp.sum(jnp.nan_to_num(model(idx)) * ct)

    ga, gb = nnx.grad(loss)(ours)["embedding"][...], nnx.grad(loss)(builtin)["embedding"][...]
    np.testing.assert_allclose(ga, gb, rtol=1e-12)
    q = jnp.asarray(np_rng(1).standard_normal((2, 1, 3)))
    np.testing.assert_allclose(ours.attend(q), builtin.attend(q), rtol=1e-12)
    ga = nnx.grad(lambda m, q: jnp.sum(jnp.sin(m.attend(q))), argnums=(0, 1))(ours, q)
    gb = nnx.grad(lambda m, q: jnp.sum(jnp.sin(m.attend(q))), argnums=(0, 1))(builtin, q)
    np.testing.assert_allclose(ga[1], gb[1], rtol=1e-12)
    np.testing.assert_allclose(ga[0]["embedding"][...], gb[0]["embedding"][...], rtol=1e-12)


def test_nnx_module_dtype_and_single_row_like_builtin():
    for kwargs in ({"dtype": jnp.bfloat16}, {"param_dtype": jnp.float16}):
        a, b = Embed(4, 2, rngs=nnx.Rngs(0), **kwargs), nnx.Embed(4, 2, rngs=nnx.Rngs(0), **kwargs)
        out, ref = a(jnp.array([1, 3])), b(jnp.array([1, 3]))
        assert out.dtype == ref.dtype
        np.testing.assert_array_equal(out, ref)
    a, b = Embed(1, 3, rngs=nnx.Rngs(0)), nnx.Embed(1, 3, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(a(jnp.array([0, 2, 5])), b(jnp.array([0, 2, 5])))
    g = nnx.grad(lambda m: jnp.sum(m(jnp.array([0, 2, 5]))))(a)["embedding"][...]
    np.testing.assert_array_equal(g, jnp.full((1, 3), 3.0))


def test_nnx_padding_row_starts_at_zero_and_gets_no_gradient():
    m = Embed(5, 2, param_dtype=jnp.float64, padding_idx=-2, rngs=nnx.Rngs(0))
    assert m.padding_idx == 3 and not m.embedding[...][3].any()
    g = nnx.grad(lambda m: jnp.sum(m(jnp.array([3, 3, 0]))))(m)["embedding"][...]
    np.testing.assert_array_equal(g[:, 0], [1, 0, 0, 0, 0])


def test_weights_port_between_builtins_both_ways():
    torch_emb = torch.nn.Embedding(6, 3, dtype=torch.float64)
    flax_emb = nnx.Embed(6, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_emb, flax_emb)
    idx = np_rng().integers(0, 6, (2, 5))
    np.testing.assert_array_equal(flax_emb(jnp.asarray(idx)), torch_emb(torch.from_numpy(idx)).detach().numpy())
    back = torch.nn.Embedding(6, 3, dtype=torch.float64)
    nnx_to_torch(flax_emb, back)
    assert torch.equal(back.weight, torch_emb.weight)
    ours = Embed(6, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
    torch_to_nnx(torch_emb, ours)
    np.testing.assert_array_equal(ours(jnp.asarray(idx)), flax_emb(jnp.asarray(idx)))


def test_bad_arguments_name_the_argument():
    w, idx = torch.randn(4, 2), torch.tensor([0, 1])
    for kwargs, name in [
        ({"max_norm": 1.0}, "`max_norm`"),
        ({"sparse": True}, "`sparse`"),
        ({"padding_idx": 4}, "`padding_idx`"),
        ({"padding_idx": -5}, "`padding_idx`"),
    ]:
        with pytest.raises(ValueError, match=name):
            torch_embedding(idx, w, **kwargs)
    with pytest.raises(ValueError, match="`input`"):
        torch_embedding(torch.tensor([0.0, 1.0]), w)
    with pytest.raises(ValueError, match="`weight`"):
        torch_embedding(idx, torch.randn(4))
    with pytest.raises(ValueError, match="`max_norm`"):
        Embedding(4, 2, max_norm=1.0)
    with pytest.raises(ValueError, match="`padding_idx`"):
        Embedding(4, 2, padding_idx=7)
    with pytest.raises(ValueError, match="`_weight`"):
        Embedding(4, 2, _weight=torch.randn(2, 4))
    with pytest.raises(ValueError, match="`padding_idx`"):
        jax_embedding(jnp.array([0]), jnp.ones((4, 2)), padding_idx=4)
    with pytest.raises(ValueError, match="`indices`"):
        jax_embedding(jnp.array([0.0]), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="`inputs`"):
        Embed(4, 2, rngs=nnx.Rngs(0))(jnp.array([0.5]))
    with pytest.raises(ValueError, match="`padding_idx`"):
        Embed(4, 2, padding_idx=-5, rngs=nnx.Rngs(0))


MUTANTS = [m for m in all_mutants() if m.case in {c.name for c in select(["embedding"])}]
