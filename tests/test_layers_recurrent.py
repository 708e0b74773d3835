"""LSTM and GRU cells: gradchecks, drop-in parity with torch.nn and flax.nnx, weight porting, mutants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.test_util import check_grads

from crosscheck.convert import nnx_to_torch, torch_to_nnx
from crosscheck.convert.recurrent import gru_map
from crosscheck.mutants import all_mutants
from helpers import np_rng, t64
from jax_layers import recurrent as J
from torch_layers import recurrent as T

GATES = {"lstm": 4, "gru": 3}
# (batch dims, in, hidden): a batch, a batch of 1 with width-1 input, unbatched.
SHAPES = [((3,), 5, 2), ((1,), 1, 3), ((), 3, 2)]


def _torch_args(kind, batch, n_in, hidden, bias, rng):
    g = GATES[kind]
    states = [t64(rng.standard_normal((*batch, hidden))) for _ in range(2 if kind == "lstm" else 1)]
    weights = [t64(0.5 * rng.standard_normal((g * hidden, n))) for n in (n_in, hidden)]
    biases = [t64(0.5 * rng.standard_normal(g * hidden)) for _ in range(2)] if bias else [None, None]
    return (t64(rng.standard_normal((*batch, n_in))), *states, *weights, *biases)


def _torch_fn(kind):
    return T.lstm_cell if kind == "lstm" else T.gru_cell


@pytest.mark.parametrize("batch,n_in,hidden", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", list(GATES))
def test_torch_gradcheck(kind, batch, n_in, hidden, bias):
    args = _torch_args(kind, batch, n_in, hidden, bias, np_rng())
    assert torch.autograd.gradcheck(_torch_fn(kind), args)
    assert torch.autograd.gradgradcheck(_torch_fn(kind), args)


@pytest.mark.parametrize("batch,n_in,hidden", SHAPES, ids=str)
@pytest.mark.parametrize("kind", list(GATES))
def test_jax_check_grads(kind, batch, n_in, hidden):
    args = [jnp.asarray(a.detach().numpy()) for a in _torch_args(kind, batch, n_in, hidden, True, np_rng())]
    n_states = 2 if kind == "lstm" else 1
    args[1 + n_states:3 + n_states] = [w.T for w in args[1 + n_states:3 + n_states]]  # torch -> Flax layout
    fn = J.lstm_cell if kind == "lstm" else J.gru_cell
    check_grads(fn, tuple(args), order=2, modes=["rev"])
    check_grads(lambda *a: fn(*a), tuple(args[:-2]), order=2, modes=["rev"])  # no biases


@pytest.mark.parametrize("kind", list(GATES))
def test_torch_functional_matches_builtin(kind):
    args = _torch_args(kind, (3,), 4, 2, True, np_rng(1))
    if kind == "lstm":
        x, h, c, *rest = args
        builtin = lambda: torch.lstm_cell(x, (h, c), *rest)  # noqa: E731
    else:
        builtin = lambda: torch.gru_cell(*args)  # noqa: E731
    ours = _torch_fn(kind)(*args)
    for a, b in zip(ours if kind == "lstm" else (ours,), builtin() if kind == "lstm" else (builtin(),)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


MODULES = {"lstm": (T.LSTMCell, torch.nn.LSTMCell), "gru": (T.GRUCell, torch.nn.GRUCell)}


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", list(GATES))
def test_torch_module_is_a_drop_in(kind, bias):
    ours_cls, builtin_cls = MODULES[kind]
    torch.manual_seed(0)
    builtin = builtin_cls(5, 3, bias=bias, dtype=torch.float64)
    torch.manual_seed(0)
    ours = ours_cls(5, 3, bias=bias, dtype=torch.float64)
    # Same init draws in the same order: identical parameters from the same seed.
    assert list(dict(ours.named_parameters())) == list(dict(builtin.named_parameters()))
    for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
        assert torch.equal(p, q), name
    assert repr(ours).split("(", 1)[1] == repr(builtin).split("(", 1)[1]
    ours.load_state_dict(builtin.state_dict())
    rng = np_rng(2)
    for batch in ((4,), (1,), ()):  # batched, batch of 1, unbatched
        x = t64(rng.standard_normal((*batch, 5)))
        states = [rng.standard_normal((*batch, 3)) for _ in range(2 if kind == "lstm" else 1)]
        for with_hx in (True, False):
            leaves_a, leaves_b = [x.detach().clone().requires_grad_()], [x.detach().clone().requires_grad_()]
            hx_a = hx_b = None
            if with_hx:
                sa, sb = [t64(s) for s in states], [t64(s) for s in states]
                leaves_a, leaves_b = leaves_a + sa, leaves_b + sb
                hx_a, hx_b = (tuple(sa), tuple(sb)) if kind == "lstm" else (sa[0], sb[0])
            out_a, out_b = _as_tuple(ours(leaves_a[0], hx_a)), _as_tuple(builtin(leaves_b[0], hx_b))
            for a, b in zip(out_a, out_b):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
            sum((o.sin()).sum() for o in out_a).backward()
            sum((o.sin()).sum() for o in out_b).backward()
            for a, b in zip(leaves_a, leaves_b):
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)
            for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12, msg=name)
                p.grad = q.grad = None


@pytest.mark.parametrize("kind", list(GATES))
def test_torch_empty_batch_like_builtin(kind):
    ours_cls, builtin_cls = MODULES[kind]
    ours, builtin = ours_cls(4, 3, dtype=torch.float64), builtin_cls(4, 3, dtype=torch.float64)
    ours.load_state_dict(builtin.state_dict())
    x = torch.randn(0, 4, dtype=torch.float64, requires_grad=True)
    out = _as_tuple(ours(x))
    assert [tuple(o.shape) for o in out] == [tuple(o.shape) for o in _as_tuple(builtin(x))]
    sum(o.sum() for o in out).backward()
    assert x.grad.shape == (0, 4) and torch.equal(ours.weight_ih.grad, torch.zeros_like(ours.weight_ih))


def test_torch_bad_arguments_name_the_argument():
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    w_ih, w_hh = torch.randn(16, 3), torch.randn(16, 4)
    with pytest.raises(ValueError, match="`input`"):
        T.lstm_cell(torch.randn(2, 5), h, c, w_ih, w_hh)
    with pytest.raises(ValueError, match="`cx`"):
        T.lstm_cell(x, h, torch.randn(3, 4), w_ih, w_hh)
    with pytest.raises(ValueError, match="`w_hh`"):
        T.gru_cell(x, h, torch.randn(12, 3), torch.randn(12, 5))
    with pytest.raises(ValueError, match="`b_hh`"):
        T.gru_cell(x, h, torch.randn(12, 3), torch.randn(12, 4), None, torch.randn(16))
    with pytest.raises(ValueError, match=r"`hidden_size` \(=-1\)"):
        T.LSTMCell(3, -1)
    with pytest.raises(ValueError, match="`input`"):
        T.GRUCell(3, 4)(torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match=r"`hx\[1\]`"):
        T.LSTMCell(3, 4)(torch.randn(2, 3), (torch.randn(2, 4), torch.randn(1, 2, 4)))


def test_jax_bad_arguments_name_the_argument():
    x, h = jnp.ones((2, 3)), jnp.ones((2, 4))
    with pytest.raises(ValueError, match="`x`"):
        J.lstm_cell(jnp.ones((2, 5)), h, h, jnp.ones((3, 16)), jnp.ones((4, 16)))
    with pytest.raises(ValueError, match="`h`"):
        J.gru_cell(x, jnp.ones((3, 4)), jnp.ones((3, 12)), jnp.ones((4, 12)))
    with pytest.raises(ValueError, match="`w_ih`"):
        J.gru_cell(x, h, jnp.ones((3, 16)), jnp.ones((4, 12)))
    with pytest.raises(ValueError, match=r"`hidden_features` \(=0.5\)"):
        J.GRUCell(3, 0.5, rngs=nnx.Rngs(0))


NNX = {"lstm": (J.LSTMCell, nnx.LSTMCell), "gru": (J.GRUCell, nnx.GRUCell)}


def _nnx_loss(model, carry, x):
    new_carry, out = model(carry, x)
    return sum(jnp.sum(jnp.sin(t)) for t in jax.tree_util.tree_leaves(new_carry)) + jnp.sum(jnp.cos(out))


def _param_leaves(module):
    return jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(module, nnx.Param)))[0]


@pytest.mark.parametrize("batch", [(4,), (2, 1), ()], ids=str)
@pytest.mark.parametrize("kind", list(GATES))
def test_nnx_module_is_a_drop_in(kind, batch):
    ours_cls, builtin_cls = NNX[kind]
    ours = ours_cls(5, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    builtin = builtin_cls(5, 3, param_dtype=jnp.float64, rngs=nnx.Rngs(3))
    # Same parameter paths and the same values from the same Rngs.
    assert [p for p, _ in _param_leaves(ours)] == [p for p, _ in _param_leaves(builtin)]
    for (path, a), (_, b) in zip(_param_leaves(ours), _param_leaves(builtin)):
        np.testing.assert_array_equal(a, b, err_msg=str(path))
    rng = np_rng(4)
    x = jnp.asarray(rng.standard_normal((*batch, 5)))
    carry = ours.initialize_carry(x.shape, nnx.Rngs(1))
    ref_carry = builtin.initialize_carry(x.shape, nnx.Rngs(1))
    jax.tree_util.tree_map(np.testing.assert_array_equal, carry, ref_carry)
    carry = jax.tree_util.tree_map(lambda t: jnp.asarray(rng.standard_normal(t.shape)), carry)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), ours(carry, x), builtin(carry, x)
    )
    ga = nnx.grad(_nnx_loss, argnums=(0, 1, 2))(ours, carry, x)
    gb = nnx.grad(_nnx_loss, argnums=(0, 1, 2))(builtin, carry, x)
    for a, b in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", list(GATES))
def test_nnx_other_nonlinearities_match_builtin(kind):
    ours_cls, builtin_cls = NNX[kind]
    kw = {"gate_fn": jax.nn.hard_sigmoid, "activation_fn": jax.nn.soft_sign, "param_dtype": jnp.float64}
    ours, builtin = ours_cls(3, 2, **kw, rngs=nnx.Rngs(0)), builtin_cls(3, 2, **kw, rngs=nnx.Rngs(0))
    x = jnp.asarray(np_rng(5).standard_normal((2, 3)))
    carry = jax.tree_util.tree_map(lambda t: t + 0.3, ours.initialize_carry(x.shape, nnx.Rngs(1)))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), ours(carry, x), builtin(carry, x))


def _torch_run(module, x, state):
    out = module(torch.from_numpy(x), state)
    return [o.detach().numpy() for o in _as_tuple(out)]


def _lstm_state(h, c):
    return (torch.from_numpy(h), torch.from_numpy(c))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_lstm_weights_port_between_builtins_both_ways(bias):
    rng = np_rng(6)
    x, h, c = rng.standard_normal((3, 5)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    torch_cell = torch.nn.LSTMCell(5, 2, bias=bias, dtype=torch.float64)
    flax_cell = nnx.LSTMCell(5, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_cell, flax_cell)
    (c_j, h_j), _ = flax_cell((jnp.asarray(c), jnp.asarray(h)), jnp.asarray(x))
    h_t, c_t = _torch_run(torch_cell, x, _lstm_state(h, c))
    np.testing.assert_allclose(h_j, h_t, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_j, c_t, rtol=1e-12, atol=1e-14)
    # Flax -> torch: a fresh Flax cell (its recurrent biases made nonzero when torch has them).
    source = nnx.LSTMCell(5, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(7))
    if bias:
        for name in ("hi", "hf", "hg", "ho"):
            getattr(source, name).bias.set_value(jnp.asarray(rng.standard_normal(2)))
    back = torch.nn.LSTMCell(5, 2, bias=bias, dtype=torch.float64)
    nnx_to_torch(source, back)
    (c_j, h_j), _ = source((jnp.asarray(c), jnp.asarray(h)), jnp.asarray(x))
    h_t, c_t = _torch_run(back, x, _lstm_state(h, c))
    np.testing.assert_allclose(h_j, h_t, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_j, c_t, rtol=1e-12, atol=1e-14)
    # ... and back into Flax: the same parameters exactly.
    again = nnx.LSTMCell(5, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(8))
    torch_to_nnx(back, again)
    for (path, a), (_, b) in zip(_param_leaves(again), _param_leaves(source)):
        np.testing.assert_array_equal(a, b, err_msg=str(path))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gru_weights_port_between_builtins_both_ways(bias):
    rng = np_rng(7)
    x, h = rng.standard_normal((3, 5)), rng.standard_normal((3, 2))
    torch_cell = torch.nn.GRUCell(5, 2, bias=bias, dtype=torch.float64)
    flax_cell = nnx.GRUCell(5, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    if bias:
        # flax.nnx.GRUCell has no b_hn: it refuses to drop it, and takes the rest once it is zero.
        with pytest.raises(ValueError, match="`bias_hh`"):
            torch_to_nnx(torch_cell, flax_cell)
        with torch.no_grad():
            torch_cell.bias_hh[4:].zero_()
    torch_to_nnx(torch_cell, flax_cell)
    h_j, _ = flax_cell(jnp.asarray(h), jnp.asarray(x))
    np.testing.assert_allclose(h_j, _torch_run(torch_cell, x, torch.from_numpy(h))[0], rtol=1e-12, atol=1e-14)
    source = nnx.GRUCell(5, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(7))
    if bias:
        source.dense_i.bias.set_value(jnp.asarray(rng.standard_normal(6)))
    back = torch.nn.GRUCell(5, 2, bias=bias, dtype=torch.float64)
    nnx_to_torch(source, back)
    h_j, _ = source(jnp.asarray(h), jnp.asarray(x))
    np.testing.assert_allclose(h_j, _torch_run(back, x, torch.from_numpy(h))[0], rtol=1e-12, atol=1e-14)
    again = nnx.GRUCell(5, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(8))
    torch_to_nnx(back, again)
    for (path, a), (_, b) in zip(_param_leaves(again), _param_leaves(source)):
        np.testing.assert_array_equal(a, b, err_msg=str(path))


def test_nobias_torch_refuses_a_nonzero_flax_bias():
    source = nnx.GRUCell(3, 2, bias_init=nnx.initializers.ones_init(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`dense_i.bias`"):
        nnx_to_torch(source, torch.nn.GRUCell(3, 2, bias=False))


def test_gru_with_recurrent_bias_takes_any_torch_cell():
    torch_cell = torch.nn.GRUCell(4, 3, dtype=torch.float64)
    ours = J.GRUCell(4, 3, use_recurrent_bias=True, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    arrays = {k: v.detach().numpy() for k, v in torch_cell.state_dict().items()}
    for path, value in gru_map(True, recurrent_bias=True).to_nnx(arrays).items():
        module_name, param = path.split(".")
        getattr(getattr(ours, module_name), param).set_value(jnp.asarray(value))
    rng = np_rng(8)
    x, h = rng.standard_normal((2, 4)), rng.standard_normal((2, 3))
    h_j, _ = ours(jnp.asarray(h), jnp.asarray(x))
    np.testing.assert_allclose(h_j, _torch_run(torch_cell, x, torch.from_numpy(h))[0], rtol=1e-12, atol=1e-14)


MUTANTS = [m for m in all_mutants() if m.name.startswith("recurrent/")]
