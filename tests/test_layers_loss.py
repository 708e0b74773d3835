"""Losses: gradcheck, check_grads, and drop-in parity with torch's cross_entropy / mse_loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.test_util import check_grads

from crosscheck.mutants import all_mutants
from crosscheck.registry import select
from helpers import np_rng, t64
from jax_layers import loss as JL
from torch_layers import loss as TL

# (logits shape in torch's layout, reduction, weighted, label_smoothing, ignore_index)
CE_CONFIGS = [
    ((6, 4), "mean", False, 0.0, -100),
    ((5, 4, 3), "mean", True, 0.2, -100),
    ((7, 3), "sum", True, 0.1, 1),
    ((2, 5, 1, 3), "none", True, 0.3, -100),
    ((5,), "mean", False, 0.15, -100),
    ((5,), "none", True, 0.0, -100),
]
CE_IDS = [f"{'x'.join(map(str, s))}-{r}-{'w' if w else 'now'}-eps{e}-ii{i}" for s, r, w, e, i in CE_CONFIGS]


def _ce_data(shape, weighted, ignore_index, seed=0):
    """Logits (torch layout), targets with `ignore_index` among them (one kept), class weights."""
    rng = np_rng(seed)
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    x = rng.standard_normal(shape)
    t = rng.integers(0, n_classes, () if len(shape) == 1 else (shape[0], *shape[2:]))
    if t.ndim:
        flat = t.reshape(-1)
        flat[-1] = ignore_index
        flat[0] = (ignore_index + 1) % n_classes if 0 <= ignore_index < n_classes else 0
    w = rng.uniform(0.5, 2.0, n_classes) if weighted else None
    return x, t, w


def _channels_last(x):
    return np.moveaxis(x, 1, -1) if x.ndim > 1 else x


@pytest.mark.parametrize("shape,reduction,weighted,eps,ignore_index", CE_CONFIGS, ids=CE_IDS)
def test_cross_entropy_torch_gradcheck(shape, reduction, weighted, eps, ignore_index):
    x, t, w = _ce_data(shape, weighted, ignore_index)
    target, weight = torch.from_numpy(t), None if w is None else t64(w, requires_grad=False)

    def f(v):
        return TL.cross_entropy(v, target, weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)

    assert torch.autograd.gradcheck(f, (t64(x),))
    assert torch.autograd.gradgradcheck(f, (t64(x),))


@pytest.mark.parametrize("shape,reduction,weighted,eps,ignore_index", CE_CONFIGS, ids=CE_IDS)
def test_cross_entropy_jax_check_grads(shape, reduction, weighted, eps, ignore_index):
    x, t, w = _ce_data(shape, weighted, ignore_index)
    weight = None if w is None else jnp.asarray(w)

    def f(v):
        return JL.cross_entropy(
            v, jnp.asarray(t), weight=weight, reduction=reduction, label_smoothing=eps, ignore_index=ignore_index
        )

    check_grads(f, (jnp.asarray(_channels_last(x)),), order=2, modes=["rev"])


@pytest.mark.parametrize("shape,reduction,weighted,eps,ignore_index", CE_CONFIGS, ids=CE_IDS)
def test_cross_entropy_matches_torch_builtin_on_both_sides(shape, reduction, weighted, eps, ignore_index):
    x, t, w = _ce_data(shape, weighted, ignore_index, seed=1)
    opts = {"ignore_index": ignore_index, "reduction": reduction, "label_smoothing": eps}
    weight = None if w is None else torch.from_numpy(w)
    xa, xb = t64(x), t64(x)
    ct = np_rng(2).standard_normal(() if reduction != "none" else t.shape)
    ours = TL.cross_entropy(xa, torch.from_numpy(t), weight, **opts)
    builtin = F.cross_entropy(xb, torch.from_numpy(t), weight, **opts)
    torch.testing.assert_close(ours, builtin, rtol=1e-12, atol=1e-12)
    (ours * torch.from_numpy(ct)).sum().backward()
    (builtin * torch.from_numpy(ct)).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)

    def f(v):
        out = JL.cross_entropy(v, jnp.asarray(t), weight=None if w is None else jnp.asarray(w), **opts)
        return jnp.sum(out * ct), out

    g, out = jax.grad(f, has_aux=True)(jnp.asarray(_channels_last(x)))
    np.testing.assert_allclose(out, builtin.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, _channels_last(xb.grad.numpy()), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (5,), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_class_probabilities_match_builtin_with_target_gradient(shape, reduction):
    """Soft labels: values and the gradients of both logits and probabilities, on both sides,
    against torch's built-in; gradcheck and check_grads to second order."""
    rng = np_rng(5)
    x, t, w = rng.standard_normal(shape), rng.uniform(0, 1, shape), rng.uniform(0.5, 2.0, shape[min(1, len(shape) - 1)])
    opts = {"reduction": reduction, "label_smoothing": 0.25}
    ct = rng.standard_normal(() if reduction != "none" else shape[:1] + shape[2:] if len(shape) > 1 else ())
    ours, builtin = [t64(x), t64(t)], [t64(x), t64(t)]
    a = TL.cross_entropy(*ours, torch.from_numpy(w), **opts)
    b = F.cross_entropy(*builtin, torch.from_numpy(w), **opts)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    (a * torch.from_numpy(ct)).sum().backward()
    (b * torch.from_numpy(ct)).sum().backward()
    for p, q in zip(ours, builtin):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)
    f = lambda u, v: TL.cross_entropy(u, v, torch.from_numpy(w), **opts)  # noqa: E731
    assert torch.autograd.gradgradcheck(f, (t64(x), t64(t)))

    def g(u, v):
        return JL.cross_entropy(u, v, weight=jnp.asarray(w), **opts)

    gx, gt = jax.grad(lambda u, v: jnp.sum(g(u, v) * ct), argnums=(0, 1))(
        jnp.asarray(_channels_last(x)), jnp.asarray(_channels_last(t))
    )
    np.testing.assert_allclose(gx, _channels_last(builtin[0].grad.numpy()), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(gt, _channels_last(builtin[1].grad.numpy()), rtol=1e-11, atol=1e-12)
    check_grads(g, (jnp.asarray(_channels_last(x)), jnp.asarray(_channels_last(t))), order=2, modes=["rev"])


def test_cross_entropy_mean_divides_by_the_weights_of_counted_targets():
    x = torch.zeros(3, 2, dtype=torch.float64)
    t = torch.tensor([0, 1, -100])
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    # Each counted sample has loss w[y] log 2; the mean divides by w[0] + w[1] = 4, not by 3.
    torch.testing.assert_close(TL.cross_entropy(x, t, w), torch.tensor(np.log(2.0), dtype=torch.float64))
    out = JL.cross_entropy(jnp.zeros((3, 2)), jnp.asarray(t.numpy()), weight=jnp.asarray(w.numpy()))
    np.testing.assert_allclose(out, np.log(2.0), rtol=1e-14)


def test_cross_entropy_class_weight_gets_no_gradient_even_alone():
    # The built-in refuses a weight that requires grad; ours treats it as a constant, as the
    # JAX side does, also when it alone requires grad and the backward runs for it.
    x, t, w = _ce_data((4, 3), True, -100)
    weight = t64(w)
    loss = TL.cross_entropy(t64(x, requires_grad=False), torch.from_numpy(t), weight)
    assert loss.requires_grad
    loss.backward()
    assert weight.grad is None


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_empty_and_all_ignored_like_builtin(reduction):
    for x, t in [(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), (torch.randn(2, 3), torch.full((2,), -100))]:
        ours, builtin = TL.cross_entropy(x, t, reduction=reduction), F.cross_entropy(x, t, reduction=reduction)
        torch.testing.assert_close(ours, builtin, equal_nan=True)
        out = JL.cross_entropy(jnp.asarray(x.numpy()), jnp.asarray(t.numpy()), reduction=reduction)
        np.testing.assert_allclose(out, builtin.numpy(), rtol=1e-6)
    x = torch.zeros(0, 3, requires_grad=True)
    TL.cross_entropy(x, torch.zeros(0, dtype=torch.long), reduction="sum").backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_keeps_the_dtype(dtype):
    x = torch.randn(4, 3, dtype=getattr(torch, dtype), requires_grad=True)
    t = torch.tensor([0, 2, 1, -100])
    out = TL.cross_entropy(x, t, label_smoothing=0.1)
    out.backward()
    assert out.dtype == x.dtype and x.grad.dtype == x.dtype
    ref = F.cross_entropy(x.detach().double(), t, label_smoothing=0.1)
    torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-2)
    xj = jnp.asarray(x.detach().float().numpy(), dtype)
    g = jax.grad(lambda v: JL.cross_entropy(v, jnp.asarray(t.numpy()), label_smoothing=0.1))(xj)
    assert g.dtype == xj.dtype
    np.testing.assert_allclose(np.asarray(g, np.float64), x.grad.double().numpy(), atol=2e-2)


def test_cross_entropy_modules_are_drop_ins():
    w = torch.rand(4, dtype=torch.float64) + 0.5
    builtin = torch.nn.CrossEntropyLoss(w, ignore_index=2, reduction="sum", label_smoothing=0.25)
    ours = TL.CrossEntropyLoss(w.clone(), ignore_index=2, reduction="sum", label_smoothing=0.25)
    assert ours.state_dict().keys() == builtin.state_dict().keys() == {"weight"}
    ours.load_state_dict(builtin.state_dict())
    x = torch.randn(5, 4, 2, dtype=torch.float64)
    t = torch.randint(0, 4, (5, 2))
    torch.testing.assert_close(ours(x, t), builtin(x, t), rtol=1e-12, atol=1e-12)
    assert TL.CrossEntropyLoss().weight is None and "weight" not in TL.CrossEntropyLoss().state_dict()
    module = JL.CrossEntropyLoss(weight=jnp.asarray(w.numpy()), ignore_index=2, reduction="sum", label_smoothing=0.25)
    out = module(jnp.asarray(np.moveaxis(x.numpy(), 1, -1)), jnp.asarray(t.numpy()))
    np.testing.assert_allclose(out, builtin(x, t).numpy(), rtol=1e-12)
    # The class weights are a constant of the module, not a parameter nnx.grad differentiates.
    from flax import nnx

    grads = nnx.grad(lambda m, v: m(v, jnp.asarray(t.numpy())))(module, jnp.asarray(np.moveaxis(x.numpy(), 1, -1)))
    assert not jax.tree.leaves(grads)


def test_jax_cross_entropy_class_axis():
    x, t, w = _ce_data((3, 4, 2), True, -100)
    a = JL.cross_entropy(jnp.asarray(x), jnp.asarray(t), weight=jnp.asarray(w), axis=1, reduction="none")
    b = JL.cross_entropy(jnp.asarray(_channels_last(x)), jnp.asarray(t), weight=jnp.asarray(w), reduction="none")
    np.testing.assert_allclose(a, b, rtol=1e-14)
    check_grads(lambda v: JL.cross_entropy(v, jnp.asarray(t), axis=1), (jnp.asarray(x),), order=2, modes=["rev"])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_gradcheck_check_grads_and_parity(reduction):
    rng = np_rng(3)
    x, y = rng.standard_normal((3, 1, 4)), rng.standard_normal((3, 1, 4))
    f = lambda a, b: TL.mse_loss(a, b, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(f, (t64(x), t64(y)))
    assert torch.autograd.gradgradcheck(f, (t64(x), t64(y)))
    g = lambda a, b: JL.mse_loss(a, b, reduction=reduction)  # noqa: E731
    check_grads(g, (jnp.asarray(x), jnp.asarray(y)), order=2, modes=["rev"])
    ours, builtin = [t64(x), t64(y)], [t64(x), t64(y)]
    a, b = TL.MSELoss(reduction=reduction)(*ours), torch.nn.MSELoss(reduction=reduction)(*builtin)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    for p, q in zip(ours, builtin):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)
    out = JL.MSELoss(reduction=reduction)(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(out, b.detach().numpy(), rtol=1e-12)


def test_mse_broadcasts_like_builtin_with_its_warning():
    rng = np_rng(4)
    x, y = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 1))
    ours, builtin = [t64(x), t64(y)], [t64(x), t64(y)]
    with pytest.warns(UserWarning, match="different to the input size"):
        a = TL.mse_loss(*ours)
    with pytest.warns(UserWarning, match="different to the input size"):
        b = F.mse_loss(*builtin)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    a.backward()
    b.backward()
    for p, q in zip(ours, builtin):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)
    gx, gy = jax.grad(lambda a, b: JL.mse_loss(a, b), argnums=(0, 1))(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(gx, builtin[0].grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gy, builtin[1].grad.numpy(), rtol=1e-12)
    check_grads(JL.mse_loss, (jnp.asarray(y), jnp.asarray(x)), order=2, modes=["rev"])


def test_unbatched_and_empty_mse():
    for shape in [(), (0, 3)]:
        x, y = torch.randn(shape), torch.randn(shape)
        for reduction in ("mean", "sum", "none"):
            torch.testing.assert_close(
                TL.mse_loss(x, y, reduction=reduction), F.mse_loss(x, y, reduction=reduction), equal_nan=True
            )
            out = JL.mse_loss(jnp.asarray(x.numpy()), jnp.asarray(y.numpy()), reduction=reduction)
            np.testing.assert_allclose(out, F.mse_loss(x, y, reduction=reduction).numpy(), rtol=1e-6)


def test_bad_arguments_name_the_argument():
    x, t = torch.randn(3, 4), torch.tensor([0, 1, 2])
    for kwargs, name in [
        ({"reduction": "avg"}, "`reduction`"),
        ({"size_average": True}, "`size_average`"),
        ({"reduce": False}, "`size_average`"),
        ({"label_smoothing": 1.5}, "`label_smoothing`"),
        ({"weight": torch.ones(3)}, "`weight`"),
    ]:
        with pytest.raises(ValueError, match=name):
            TL.cross_entropy(x, t, **kwargs)
    with pytest.raises(ValueError, match="`ignore_index` \\(=0\\).*class probabilities"):
        TL.cross_entropy(x, torch.softmax(torch.randn(3, 4), 1), ignore_index=0)
    with pytest.raises(ValueError, match="`target` \\(shape \\(3, 3\\)\\)"):
        TL.cross_entropy(x, torch.rand(3, 3))
    with pytest.raises(ValueError, match="`target`"):
        TL.cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`reduction`"):
        TL.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="`size_average`"):
        TL.MSELoss(size_average=False)
    with pytest.raises(ValueError, match="`weight`"):
        TL.mse_loss(x, x, weight=torch.ones(3, 4))
    xj, tj = jnp.ones((3, 4)), jnp.array([0, 1, 2])
    with pytest.raises(ValueError, match="`reduction`"):
        JL.cross_entropy(xj, tj, reduction="avg")
    with pytest.raises(ValueError, match="`labels`"):
        JL.cross_entropy(xj, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="`labels` \\(shape \\(3,\\)\\) must have shape \\(3, 4\\)"):
        JL.cross_entropy(xj, jnp.zeros(3))
    with pytest.raises(ValueError, match="`labels` \\(dtype bool\\)"):
        JL.cross_entropy(xj, jnp.zeros(3, bool))
    with pytest.raises(ValueError, match="`ignore_index` \\(=1\\)"):
        JL.cross_entropy(xj, jnp.ones((3, 4)), ignore_index=1)
    with pytest.raises(ValueError, match="`axis`"):
        JL.cross_entropy(xj, tj, axis=2)
    with pytest.raises(ValueError, match="`weight`"):
        JL.cross_entropy(xj, tj, weight=jnp.ones(3))
    with pytest.raises(ValueError, match="`target`"):
        JL.mse_loss(xj, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="`reduction`"):
        JL.MSELoss(reduction="avg")


MUTANTS = [m for m in all_mutants() if m.case in {c.name for c in select(["loss"])}]
