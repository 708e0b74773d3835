"""Attention: gradcheck, check_grads, drop-in parity with the built-ins, weight porting, mutants.

`jax.nn.dot_product_attention` (and so `flax.nnx.MultiHeadAttention`) rounds its logits to
float32 before the softmax, even for float64 inputs: parity with the JAX built-ins is checked in
float32, our float64 path against a float64 formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from jax.test_util import check_grads

from crosscheck.convert import nnx_to_torch, torch_to_nnx
from crosscheck.mutants import all_mutants
from helpers import np_rng, t64
from jax_layers import attention as JA
from torch_layers import attention as TA


def _keep(rng, shape):
    """A bool mask (True = take part) that keeps key 0, so every query (causal too) sees a key."""
    keep = rng.uniform(size=shape) > 0.4
    keep[..., 0] = True
    return keep


# -- torch: scaled_dot_product_attention ----------------------------------------------------

# (q shape, k shape, v shape, mask: None | "bool" | "float" + its shape, is_causal, scale)
SDPA = {
    "plain": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), None, False, None),
    "value-dim": ((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 6), None, False, None),
    "bool-mask": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), ("bool", (2, 1, 4, 6)), False, None),
    "float-mask": ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 5), ("float", (1, 3, 1, 6)), False, None),
    "causal-short": ((2, 1, 4, 3), (2, 1, 6, 3), (2, 1, 6, 3), None, True, None),
    "causal-long": ((1, 2, 6, 3), (1, 2, 4, 3), (1, 2, 4, 3), None, True, 0.7),
    "batch-broadcast": ((2, 3, 4, 5), (1, 3, 6, 5), (1, 3, 6, 5), None, False, None),
    "unbatched": ((4, 5), (6, 5), (6, 3), None, False, None),
}


def _sdpa_args(name, rng):
    qs, ks, vs, mask, causal, scale = SDPA[name]
    args = [t64(rng.standard_normal(s)) for s in (qs, ks, vs)]
    if mask is not None:
        kind, shape = mask
        args.append(t64(rng.standard_normal(shape)) if kind == "float" else torch.from_numpy(_keep(rng, shape)))
    return args, {"is_causal": causal, "scale": scale}


@pytest.mark.parametrize("name", list(SDPA))
def test_torch_sdpa_gradcheck(name):
    args, kw = _sdpa_args(name, np_rng())
    n = sum(a.requires_grad for a in args)

    def fn(*t):
        return TA.scaled_dot_product_attention(*t[:n], *args[n:], **kw)

    assert torch.autograd.gradcheck(fn, args[:n])
    assert torch.autograd.gradgradcheck(fn, args[:n])


@pytest.mark.parametrize("name", list(SDPA))
def test_torch_sdpa_matches_builtin(name):
    args, kw = _sdpa_args(name, np_rng(1))
    ours = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
    theirs = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
    a, b = TA.scaled_dot_product_attention(*ours, **kw), F.scaled_dot_product_attention(*theirs, **kw)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ct = torch.randn_like(a)
    (a * ct).sum().backward()
    (b * ct).sum().backward()
    for x, y in zip(ours, theirs):
        if x.requires_grad:
            torch.testing.assert_close(x.grad, y.grad, rtol=1e-11, atol=1e-11)


def test_torch_sdpa_empty_and_fully_masked_like_builtin():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    for args in ((q[:, :0], k, v), (q, k[:, :0], v[:, :0]), (q[:0], k[:0], v[:0])):
        torch.testing.assert_close(TA.scaled_dot_product_attention(*args), F.scaled_dot_product_attention(*args))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False  # a query that sees no key: 0, as the built-in gives
    torch.testing.assert_close(
        TA.scaled_dot_product_attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, mask)
    )
    qg = q.clone().requires_grad_()
    TA.scaled_dot_product_attention(qg, k, v, mask).sum().backward()
    assert torch.isfinite(qg.grad).all() and not qg.grad[:, 1].any()
    x = torch.randn(0, 3, 4, requires_grad=True)
    TA.scaled_dot_product_attention(x, k[:0], v[:0]).sum().backward()
    assert x.grad.shape == (0, 3, 4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dropout_p": 1.5}, "`dropout_p`"),
        ({"dropout_mask": torch.ones(3, 5, dtype=torch.bool)}, "`dropout_mask`"),
        ({"dropout_p": 0.5, "dropout_mask": torch.ones(2, 5, dtype=torch.bool)}, "`dropout_mask`"),
        ({"attn_mask": torch.ones(3, 5, dtype=torch.bool), "is_causal": True}, "`attn_mask`"),
        ({"attn_mask": torch.ones(3, 5, dtype=torch.float64)}, "`attn_mask` dtype"),
        ({"attn_mask": torch.ones(2, 4, dtype=torch.bool)}, "`attn_mask`"),
    ],
    ids=["dropout", "keep-without-dropout", "keep-shape", "mask-and-causal", "mask-dtype", "mask-shape"],
)
def test_torch_sdpa_bad_arguments(kwargs, match):
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=match):
        TA.scaled_dot_product_attention(q, k, v, **kwargs)
    with pytest.raises(ValueError, match="`enable_gqa`"):
        TA.scaled_dot_product_attention(torch.randn(1, 4, 3, 2), torch.randn(1, 2, 5, 2), torch.randn(1, 2, 5, 2), enable_gqa=True)


def test_torch_sdpa_module():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    out = TA.ScaledDotProductAttention(is_causal=True, scale=0.5)(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5))


# -- torch: multi-head attention ------------------------------------------------------------


def _mha_pair(seed=0, **kwargs):
    torch.manual_seed(seed)
    builtin = torch.nn.MultiheadAttention(6, 2, dtype=torch.float64, **kwargs)
    torch.manual_seed(seed)
    ours = TA.MultiheadAttention(6, 2, dtype=torch.float64, **kwargs)
    return ours, builtin


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_torch_mha_same_init_and_state_dict(bias):
    ours, builtin = _mha_pair(bias=bias)
    assert ours.state_dict().keys() == builtin.state_dict().keys()
    for (name, p), q in zip(ours.state_dict().items(), builtin.state_dict().values()):
        assert torch.equal(p, q), name
    ours.load_state_dict(builtin.state_dict())


def _masks(rng, n, L, S):
    return {
        "none": {},
        "padding-bool": {"key_padding_mask": torch.from_numpy(~_keep(rng, (n, S)))},
        "padding-float": {"key_padding_mask": t64(rng.standard_normal((n, S)), requires_grad=False)},
        "attn-bool-2d": {"attn_mask": torch.from_numpy(~_keep(rng, (L, S)))},
        "attn-float-3d": {"attn_mask": t64(rng.standard_normal((n * 2, L, S)), requires_grad=False)},
        "causal-hint": {"attn_mask": torch.triu(torch.full((L, S), float("-inf"), dtype=torch.float64), 1), "is_causal": True},
    }


@pytest.mark.parametrize("mask", list(_masks(np_rng(), 3, 4, 5)))
@pytest.mark.parametrize("need_weights,average", [(False, True), (True, True), (True, False)],
                         ids=["no-weights", "avg-weights", "head-weights"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "seq-first"])
def test_torch_mha_matches_builtin(mask, need_weights, average, batch_first):
    rng = np_rng(2)
    ours, builtin = _mha_pair(batch_first=batch_first)
    with torch.no_grad():  # nonzero biases, so their gradients mean something
        builtin.in_proj_bias.normal_()
        builtin.out_proj.bias.normal_()
    ours.load_state_dict(builtin.state_dict())
    shape = (lambda n, t: (n, t, 6)) if batch_first else (lambda n, t: (t, n, 6))
    x = [rng.standard_normal(shape(3, t)) for t in (4, 5, 5)]
    kw = dict(_masks(rng, 3, 4, 5)[mask], need_weights=need_weights, average_attn_weights=average)
    xa, xb = [t64(a) for a in x], [t64(a) for a in x]
    oa, wa = ours(*xa, **kw)
    ob, wb = builtin(*xb, **kw)
    torch.testing.assert_close(oa, ob, rtol=1e-12, atol=1e-12)
    assert (wa is None) == (wb is None)
    loss_a, loss_b = (oa**2).sum(), (ob**2).sum()
    if need_weights:
        torch.testing.assert_close(wa, wb, rtol=1e-12, atol=1e-12)
        ct = torch.from_numpy(rng.standard_normal(wa.shape))
        loss_a, loss_b = loss_a + (wa * ct).sum(), loss_b + (wb * ct).sum()
    loss_a.backward()
    loss_b.backward()
    for a, b in zip(xa, xb):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-11, atol=1e-11)
    for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-11, atol=1e-11, msg=name)


def test_torch_mha_unbatched_like_builtin():
    ours, builtin = _mha_pair(batch_first=True)
    q, kv = torch.randn(4, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    pad = torch.tensor([False, True, False, False, True])
    for kw in ({}, {"key_padding_mask": pad}, {"average_attn_weights": False}):
        (oa, wa), (ob, wb) = ours(q, kv, kv, **kw), builtin(q, kv, kv, **kw)
        torch.testing.assert_close(oa, ob, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(wa, wb, rtol=1e-12, atol=1e-12)


def test_torch_mha_functional_gradcheck():
    rng = np_rng(3)
    q, k, v = (t64(rng.standard_normal(s)) for s in ((4, 2, 6), (5, 2, 6), (5, 2, 6)))
    w, b, wo, bo = (t64(0.4 * rng.standard_normal(s)) for s in ((18, 6), (18,), (6, 6), (6,)))
    pad = torch.from_numpy(~_keep(rng, (2, 5)))

    def fn(q, k, v, w, b, wo, bo):
        return TA.multi_head_attention_forward(
            q, k, v, 6, 3, w, b, None, None, False, 0.0, wo, bo, key_padding_mask=pad, average_attn_weights=False
        )

    args = (q, k, v, w, b, wo, bo)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dropout": 1.5}, "`dropout`"),
        ({"num_heads": 4}, "`embed_dim`"),
    ],
    ids=["dropout", "heads"],
)
def test_torch_mha_bad_arguments(kwargs, match):
    kw = {"embed_dim": 6, "num_heads": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        TA.MultiheadAttention(**kw)


def test_torch_mha_bad_call_arguments():
    m = TA.MultiheadAttention(6, 2)
    x = torch.randn(3, 2, 6)
    with pytest.raises(ValueError, match="`is_causal`"):
        m(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="`attn_mask`"):
        m(x, x, x, attn_mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="`key_padding_mask`"):
        m(x, x, x, key_padding_mask=torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="`query`"):
        m(torch.randn(3, 2, 5), x, x)


# -- JAX: dot_product_attention ---------------------------------------------------------------


def _formula(q, k, v, bias=None, mask=None, is_causal=False, scale=None):
    """The float64 reference: softmax(scale q k^T + bias, masked) v, `(B, T, N, H)` layout."""
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = jnp.einsum("...tnh,...snh->...nts", q, k) * scale
    s = s if bias is None else s + bias
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    if is_causal:
        s = jnp.where(jnp.tril(jnp.ones(s.shape[-2:], bool)), s, -jnp.inf)
    return jnp.einsum("...nts,...snh->...tnh", jax.nn.softmax(s, axis=-1), v)


# (q shape, k/v shape, bias shape or None, mask shape or None, is_causal, scale)
DPA = {
    "plain": ((2, 4, 3, 5), (2, 6, 3, 5), None, None, False, None),
    "bias": ((2, 4, 3, 5), (2, 6, 3, 5), (1, 3, 1, 6), None, False, None),
    "bias-2d": ((2, 4, 1, 3), (2, 5, 1, 3), (4, 5), None, False, None),
    "mask": ((2, 4, 3, 5), (2, 6, 3, 5), None, (2, 1, 4, 6), False, None),
    "bias-mask-causal": ((1, 6, 2, 3), (1, 4, 2, 3), (1, 2, 6, 4), (1, 2, 6, 4), True, 0.7),
    "causal": ((2, 4, 1, 3), (2, 6, 1, 3), None, None, True, None),
    "unbatched": ((4, 3, 5), (6, 3, 5), None, None, False, None),
}


def _dpa_args(name, rng, dtype=jnp.float64):
    qs, ks, bs, ms, causal, scale = DPA[name]
    q, k, v = (jnp.asarray(rng.standard_normal(s), dtype) for s in (qs, ks, ks))
    bias = None if bs is None else jnp.asarray(rng.standard_normal(bs), dtype)
    mask = None if ms is None else jnp.asarray(_keep(rng, ms))
    return (q, k, v, bias), {"mask": mask, "is_causal": causal, "scale": scale}


@pytest.mark.parametrize("name", list(DPA))
def test_jax_dpa_check_grads(name):
    args, kw = _dpa_args(name, np_rng())
    args = tuple(a for a in args if a is not None)
    n_qkv = 3

    def fn(*t):
        return JA.dot_product_attention(*t[:n_qkv], *(t[n_qkv:] or (None,)), **kw)

    # jit: one compile per derivative order instead of op-by-op dispatch.
    check_grads(jax.jit(fn), args, order=2, modes=["rev"])
    np.testing.assert_allclose(fn(*args), _formula(*args[:3], *(args[3:] or (None,)), **kw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(DPA))
def test_jax_dpa_matches_builtin_float32(name):
    (q, k, v, bias), kw = _dpa_args(name, np_rng(1), jnp.float32)
    diff = (q, k, v) if bias is None else (q, k, v, bias)

    def loss(f):
        return lambda *t: jnp.sum(jnp.sin(f(*t[:3], t[3] if len(t) > 3 else None, **kw)))

    np.testing.assert_allclose(
        JA.dot_product_attention(q, k, v, bias, **kw), jax.nn.dot_product_attention(q, k, v, bias, **kw), rtol=1e-5, atol=1e-6
    )
    argnums = tuple(range(len(diff)))
    ga = jax.jit(jax.grad(loss(JA.dot_product_attention), argnums))(*diff)
    gb = jax.jit(jax.grad(loss(jax.nn.dot_product_attention), argnums))(*diff)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_jax_dpa_empty_and_module_like_builtin():
    q, k = jnp.ones((2, 3, 2, 4)), jnp.ones((2, 5, 2, 4))
    for args in ((q[:, :0], k, k), (q, k[:, :0], k[:, :0]), (q[:0], k[:0], k[:0])):
        np.testing.assert_array_equal(JA.dot_product_attention(*args), jax.nn.dot_product_attention(*args))
    assert jax.grad(lambda x: JA.dot_product_attention(x, k, k).sum())(q[:, :0]).shape == (2, 0, 2, 4)
    rng = np_rng(4)
    q, k, v = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((2, 3, 2, 4), (2, 5, 2, 4), (2, 5, 2, 4)))
    mask = jnp.ones((1, 1, 3, 5), bool).at[..., 1, :].set(False)  # a query that sees no key: uniform
    np.testing.assert_allclose(
        JA.DotProductAttention(is_causal=False)(q, k, v, None, mask),
        jax.nn.dot_product_attention(q, k, v, mask=mask), rtol=1e-5, atol=1e-6,
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mask": jnp.ones((1, 1, 3, 5))}, "`mask` dtype"),
        ({"bias": jnp.ones((2, 4))}, "`bias`"),
        ({"implementation": "cudnn"}, "`implementation`"),
        ({"local_window_size": 2}, "`local_window_size`"),
        ({"return_residual": True}, "`return_residual`"),
    ],
    ids=["mask-dtype", "bias-shape", "cudnn", "window", "residual"],
)
def test_jax_dpa_bad_arguments(kwargs, match):
    q, k = jnp.ones((2, 3, 2, 4)), jnp.ones((2, 5, 2, 4))
    with pytest.raises(ValueError, match=match):
        JA.dot_product_attention(q, k, k, **kwargs)
    with pytest.raises(ValueError, match="GQA"):
        JA.dot_product_attention(jnp.ones((2, 3, 4, 4)), k, k)


# -- JAX: MultiHeadAttention ----------------------------------------------------------------

MHA_CONFIGS = {
    "default": dict(num_heads=2, in_features=6),
    "features": dict(num_heads=3, in_features=4, qkv_features=6, out_features=5, in_kv_features=3),
    "nobias": dict(num_heads=2, in_features=6, use_bias=False),
}


def _nnx_pair(config, dtype=jnp.float32):
    kw = dict(MHA_CONFIGS[config], param_dtype=dtype, decode=False)
    return JA.MultiHeadAttention(**kw, rngs=nnx.Rngs(5)), nnx.MultiHeadAttention(**kw, rngs=nnx.Rngs(5))


@pytest.mark.parametrize("config", list(MHA_CONFIGS))
def test_nnx_mha_same_init(config):
    ours, builtin = _nnx_pair(config)
    a, b = nnx.to_pure_dict(nnx.state(ours, nnx.Param)), nnx.to_pure_dict(nnx.state(builtin, nnx.Param))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("config", list(MHA_CONFIGS))
def test_nnx_mha_matches_builtin_float32(config, masked):
    ours, builtin = _nnx_pair(config)
    rng = np_rng(6)
    if ours.use_bias:  # nonzero biases, so their gradients mean something
        for m in (ours, builtin):
            for name in ("query", "key", "value", "out"):
                getattr(m, name).bias.set_value(jnp.full(getattr(m, name).bias.get_value().shape, 0.3, jnp.float32))
    q = jnp.asarray(rng.standard_normal((3, 4, ours.in_features)), jnp.float32)
    kv = jnp.asarray(rng.standard_normal((3, 5, ours.in_kv_features)), jnp.float32)
    mask = jnp.asarray(_keep(rng, (3, 1, 4, 5))) if masked else None

    def loss(model, q, kv):
        return jnp.sum(jnp.sin(model(q, kv, kv, mask=mask)))

    np.testing.assert_allclose(ours(q, kv, mask=mask), builtin(q, kv, mask=mask), rtol=1e-5, atol=1e-6)
    ga = nnx.jit(nnx.grad(loss, argnums=(0, 1, 2)))(ours, q, kv)
    gb = nnx.jit(nnx.grad(loss, argnums=(0, 1, 2)))(builtin, q, kv)
    np.testing.assert_allclose(ga[1], gb[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ga[2], gb[2], rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 nnx.to_pure_dict(ga[0]), nnx.to_pure_dict(gb[0]))


def test_nnx_mha_unbatched_and_causal():
    ours, builtin = _nnx_pair("default")
    x = jnp.asarray(np_rng(7).standard_normal((4, 6)), jnp.float32)
    np.testing.assert_allclose(ours(x), builtin(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(x, is_causal=True), builtin(x, is_causal=True), rtol=1e-5, atol=1e-6)


def test_jax_mha_functional_check_grads():
    rng = np_rng(8)
    arrays = [jnp.asarray(rng.standard_normal(s)) for s in (
        (2, 3, 4), (2, 5, 3), (2, 5, 3), (4, 2, 3), (3, 2, 3), (3, 2, 3), (2, 3, 5), (2, 3), (2, 3), (2, 3), (5,),
    )]
    mask = jnp.asarray(_keep(rng, (2, 1, 3, 5)))
    check_grads(jax.jit(lambda *a: JA.multi_head_attention(*a, mask=mask)), arrays, order=2, modes=["rev"])


def test_nnx_mha_bad_arguments():
    with pytest.raises(ValueError, match="`dropout_rate`"):
        JA.MultiHeadAttention(2, 6, dropout_rate=1.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`num_kv_heads`"):
        JA.MultiHeadAttention(4, 8, num_kv_heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`normalize_qk`"):
        JA.MultiHeadAttention(2, 6, normalize_qk=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`qkv_features`"):
        JA.MultiHeadAttention(4, 6, rngs=nnx.Rngs(0))
    m = JA.MultiHeadAttention(2, 6, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 3, 6))
    with pytest.raises(ValueError, match="`decode`"):
        m(x)  # as the built-in: decode must be given somewhere
    with pytest.raises(ValueError, match="`decode`"):
        m(x, decode=True)
    with pytest.raises(ValueError, match="`inputs_q`"):
        m(jnp.ones((1, 3, 5)), decode=False)


# -- weights between the built-ins -----------------------------------------------------------


def test_weights_port_between_builtins_both_ways():
    torch.manual_seed(0)
    torch_mha = torch.nn.MultiheadAttention(6, 3, batch_first=True)
    with torch.no_grad():
        torch_mha.in_proj_bias.normal_()
        torch_mha.out_proj.bias.normal_()
    flax_mha = nnx.MultiHeadAttention(3, 6, decode=False, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_mha, flax_mha)
    rng = np_rng(9)
    q, kv = rng.standard_normal((2, 4, 6)).astype(np.float32), rng.standard_normal((2, 5, 6)).astype(np.float32)
    pad = ~_keep(rng, (2, 5))
    expected = torch_mha(*(torch.from_numpy(a) for a in (q, kv, kv)), key_padding_mask=torch.from_numpy(pad))[0]
    got = flax_mha(jnp.asarray(q), jnp.asarray(kv), mask=jnp.asarray(~pad)[:, None, None, :])
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-5, atol=1e-5)
    back = torch.nn.MultiheadAttention(6, 3, batch_first=True)
    nnx_to_torch(flax_mha, back)
    for name, p in torch_mha.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], p, rtol=0, atol=0, msg=name)


def test_weights_port_into_our_modules():
    builtin = torch.nn.MultiheadAttention(6, 2, batch_first=True, dtype=torch.float64)
    ours = JA.MultiHeadAttention(2, 6, decode=False, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
    torch_to_nnx(builtin, ours)
    x = np_rng(10).standard_normal((2, 4, 6))
    expected = builtin(*(torch.from_numpy(x),) * 3, need_weights=False)[0]
    np.testing.assert_allclose(ours(jnp.asarray(x)), expected.detach().numpy(), rtol=1e-12, atol=1e-12)


# -- mutants -----------------------------------------------------------------------------------

MUTANTS = [m for m in all_mutants() if m.name.startswith("attention/")]
