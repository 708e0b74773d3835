"""Attention's drop-in options (issue 17): dropout on the weights, keys and values of their own
sizes, torch's appended key/value rows. Values and gradients against the built-ins, with the
same seed drawing the same dropout mask; gradcheck and check_grads of the new backward code;
weights ported with the new parameters."""

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
from helpers import np_rng, t64
from jax_layers import attention as JA
from torch_layers import attention as TA

# torch.nn.MultiheadAttention options; E = 6, 2 heads.
MHA = {
    "dropout": dict(dropout=0.3),
    "kdim-vdim": dict(kdim=3, vdim=5),
    "bias-kv": dict(add_bias_kv=True),
    "zero-attn": dict(add_zero_attn=True),
    "everything": dict(dropout=0.5, kdim=4, vdim=2, add_bias_kv=True, add_zero_attn=True),
}


def _pair(options, batch_first=False):
    """Our module and the built-in, drawn from the same seed (so equal parameters)."""
    torch.manual_seed(0)
    builtin = torch.nn.MultiheadAttention(6, 2, batch_first=batch_first, dtype=torch.float64, **options)
    torch.manual_seed(0)
    ours = TA.MultiheadAttention(6, 2, batch_first=batch_first, dtype=torch.float64, **options)
    return ours, builtin


@pytest.mark.parametrize("name", list(MHA))
def test_torch_mha_same_parameters_as_builtin(name):
    ours, builtin = _pair(MHA[name])
    assert list(ours.state_dict()) == list(builtin.state_dict())
    for (key, a), b in zip(ours.state_dict().items(), builtin.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "no-weights"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "masks"])
@pytest.mark.parametrize("name", list(MHA))
def test_torch_mha_matches_builtin_same_seed(name, masked, need_weights):
    """The same seed draws the same dropout mask as the built-in, on both of its paths."""
    ours, builtin = _pair(MHA[name], batch_first=True)
    rng = np_rng(1)
    dims = (6, ours.kdim, ours.vdim)
    x = [rng.standard_normal((3, t, d)) for t, d in zip((4, 5, 5), dims)]
    kw = {"need_weights": need_weights, "average_attn_weights": False}
    if masked:
        # Key 0 stays visible: the built-in gives NaN for a fully masked row with weights.
        kw["key_padding_mask"] = torch.from_numpy(rng.uniform(size=(3, 5)) < 0.3).index_fill(1, torch.tensor([0]), False)
        kw["attn_mask"] = torch.from_numpy(rng.uniform(size=(4, 5)) < 0.3).index_fill(1, torch.tensor([0]), False)
    xa, xb = [t64(a) for a in x], [t64(a) for a in x]
    torch.manual_seed(7)
    oa, wa = ours(*xa, **kw)
    torch.manual_seed(7)
    ob, wb = builtin(*xb, **kw)
    torch.testing.assert_close(oa, ob, rtol=1e-12, atol=1e-12)
    if need_weights:
        torch.testing.assert_close(wa, wb, rtol=1e-12, atol=1e-12)
    ct = torch.from_numpy(rng.standard_normal(oa.shape))
    (oa * ct).sum().backward()
    (ob * ct).sum().backward()
    for a, b in zip(xa, xb):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-11, atol=1e-11)
    for (key, p), q in zip(ours.named_parameters(), builtin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-11, atol=1e-11, msg=key)


def test_torch_mha_eval_mode_ignores_dropout():
    ours, builtin = _pair({"dropout": 0.9})
    ours.eval(), builtin.eval()
    x = torch.randn(4, 2, 6, dtype=torch.float64)
    keep = torch.zeros(2, 2, 4, 4, dtype=torch.bool)  # would drop everything in training
    torch.testing.assert_close(ours(x, x, x, dropout_mask=keep)[0], builtin(x, x, x)[0], rtol=1e-12, atol=1e-12)


def test_torch_mha_functional_gradcheck_rows_dims_dropout():
    """The hand-written backward of the appended rows, the separate projections and dropout."""
    rng = np_rng(3)
    shapes = ((4, 2, 6), (5, 2, 3), (5, 2, 4), (6, 6), (6, 3), (6, 4), (18,), (6,), (1, 1, 6), (6, 6), (6,))
    args = tuple(t64(0.5 * rng.standard_normal(s)) for s in shapes)
    keep = torch.from_numpy(rng.uniform(size=(2, 3, 4, 7)) > 0.3)
    pad = torch.from_numpy(rng.uniform(size=(2, 5)) < 0.3)

    def fn(q, k, v, wq, wk, wv, b, bk, bv, wo, bo):
        return TA.multi_head_attention_forward(
            q, k, v, 6, 3, None, b, bk, bv, True, 0.25, wo, bo, key_padding_mask=pad, average_attn_weights=False,
            use_separate_proj_weight=True, q_proj_weight=wq, k_proj_weight=wk, v_proj_weight=wv, dropout_mask=keep,
        )

    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_torch_sdpa_dropout_same_seed_and_gradcheck():
    rng = np_rng(4)
    q, k, v = (t64(rng.standard_normal(s)) for s in ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2)))
    torch.manual_seed(3)
    a = TA.scaled_dot_product_attention(q, k, v, dropout_p=0.4, is_causal=True)
    torch.manual_seed(3)
    torch.testing.assert_close(a, F.scaled_dot_product_attention(q, k, v, dropout_p=0.4, is_causal=True), rtol=1e-12, atol=1e-12)
    keep = torch.from_numpy(rng.uniform(size=(3, 4, 6)) > 0.4)
    mask = t64(rng.standard_normal((4, 6)))

    def fn(q, k, v, mask):
        return TA.scaled_dot_product_attention(q, k, v, mask, dropout_p=0.4, dropout_mask=keep)

    assert torch.autograd.gradcheck(fn, (q, k, v, mask))
    assert torch.autograd.gradgradcheck(fn, (q, k, v, mask))
    assert not TA.scaled_dot_product_attention(q, k, v, dropout_p=1.0).any()


def test_torch_mha_bad_rows_and_weights():
    x = torch.randn(3, 2, 6)
    w, b = torch.randn(18, 6), torch.randn(18)
    wo = torch.randn(6, 6)
    with pytest.raises(ValueError, match="`bias_k`"):
        TA.multi_head_attention_forward(x, x, x, 6, 2, w, b, torch.randn(1, 1, 6), None, False, 0.0, wo, None)
    with pytest.raises(ValueError, match="`bias_k`"):
        TA.multi_head_attention_forward(x, x, x, 6, 2, w, b, torch.randn(2, 6), torch.randn(2, 6), False, 0.0, wo, None)
    with pytest.raises(ValueError, match="`k_proj_weight`"):
        TA.multi_head_attention_forward(x, x, x, 6, 2, None, b, None, None, False, 0.0, wo, None,
                                        use_separate_proj_weight=True, q_proj_weight=wo, k_proj_weight=wo[:, :3])
    with pytest.raises(ValueError, match="`in_proj_weight`"):
        TA.multi_head_attention_forward(x, torch.randn(3, 2, 4), torch.randn(3, 2, 4), 6, 2, w, b, None, None, False, 0.0, wo, None)
    with pytest.raises(ValueError, match="`static_k`.*torch.nn.functional.multi_head_attention_forward"):
        TA.multi_head_attention_forward(x, x, x, 6, 2, w, b, None, None, False, 0.0, wo, None, static_k=torch.randn(4, 3, 3))


# -- JAX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("broadcast", [True, False], ids=["broadcast", "per-element"])
def test_nnx_mha_dropout_matches_builtin_same_rngs(broadcast):
    kw = dict(num_heads=2, in_features=6, in_kv_features=4, dropout_rate=0.3, broadcast_dropout=broadcast,
              decode=False, deterministic=False)
    ours, builtin = JA.MultiHeadAttention(**kw, rngs=nnx.Rngs(0)), nnx.MultiHeadAttention(**kw, rngs=nnx.Rngs(0))
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(ours, nnx.Param)),
                 nnx.to_pure_dict(nnx.state(builtin, nnx.Param)))
    rng = np_rng(5)
    q = jnp.asarray(rng.standard_normal((3, 4, 6)), jnp.float32)
    kv = jnp.asarray(rng.standard_normal((3, 5, 4)), jnp.float32)
    for _ in range(2):  # each call draws afresh from the module's own stream
        np.testing.assert_allclose(ours(q, kv), builtin(q, kv), rtol=1e-5, atol=1e-6)

    def loss(model, q):
        return jnp.sum(jnp.sin(model(q, kv, rngs=nnx.Rngs(dropout=7))))

    ga, gb = nnx.grad(loss, argnums=(0, 1))(ours, q), nnx.grad(loss, argnums=(0, 1))(builtin, q)
    np.testing.assert_allclose(ga[1], gb[1], rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 nnx.to_pure_dict(ga[0]), nnx.to_pure_dict(gb[0]))
    np.testing.assert_allclose(ours(q, kv, deterministic=True), builtin(q, kv, deterministic=True), rtol=1e-5, atol=1e-6)


def test_nnx_attention_fn_dropout_matches_builtin():
    rng = np_rng(6)
    q, k = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((2, 4, 3, 5), (2, 6, 3, 5)))
    key = jax.random.key(1)
    np.testing.assert_allclose(JA.nnx_attention_fn(q, k, k, dropout_rng=key, dropout_rate=0.4),
                               nnx.dot_product_attention(q, k, k, dropout_rng=key, dropout_rate=0.4), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="`dropout_rng`"):
        JA.nnx_attention_fn(q, k, k, dropout_rate=0.4)
    with pytest.raises(ValueError, match="`dropout_mask`"):
        JA.nnx_attention_fn(q, k, k, dropout_rate=0.4, dropout_mask=jnp.ones((5, 5), bool))


def test_jax_mha_functional_check_grads_rows_dims_dropout():
    """The hand-written VJP of the appended rows and of dropout, with keys and values of other sizes."""
    rng = np_rng(8)
    shapes = ((2, 3, 4), (2, 5, 3), (2, 5, 2), (4, 2, 3), (3, 2, 3), (2, 2, 3), (2, 3, 5), (2, 3), (2, 3), (2, 3), (5,))
    arrays = [jnp.asarray(rng.standard_normal(s)) for s in shapes]
    rows = [jnp.asarray(rng.standard_normal((2, 3))) for _ in range(2)]
    mask = jnp.asarray(rng.uniform(size=(2, 1, 3, 5)) > 0.3).at[..., 0].set(True)
    keep = jnp.asarray(rng.uniform(size=(2, 2, 3, 7)) > 0.3)

    def fn(*a):
        return JA.multi_head_attention(*a[:-2], mask=mask, bias_k=a[-2], bias_v=a[-1], add_zero_attn=True,
                                       dropout_rate=0.25, dropout_mask=keep)

    check_grads(jax.jit(fn), [*arrays, *rows], order=2, modes=["rev"])


def test_weights_port_with_kdim_and_rows():
    """torch's separate projection weights port to nnx's in_kv_features and back, bit for bit."""
    torch.manual_seed(0)
    builtin = torch.nn.MultiheadAttention(6, 2, kdim=4, vdim=4, batch_first=True, dtype=torch.float64)
    ours = JA.MultiHeadAttention(2, 6, in_kv_features=4, decode=False, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
    torch_to_nnx(builtin, ours)
    rng = np_rng(10)
    q, kv = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 5, 4))
    expected = builtin(torch.from_numpy(q), torch.from_numpy(kv), torch.from_numpy(kv), need_weights=False)[0]
    np.testing.assert_allclose(ours(jnp.asarray(q), jnp.asarray(kv)), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    back = torch.nn.MultiheadAttention(6, 2, kdim=4, vdim=4, batch_first=True, dtype=torch.float64)
    nnx_to_torch(ours, back)
    for name, p in builtin.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], p, rtol=0, atol=0, msg=name)
