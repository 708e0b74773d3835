"""Norms: gradcheck, check_grads, running statistics, and drop-in parity with torch.nn / flax.nnx."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from jax.test_util import check_grads

from crosscheck.convert import nnx_to_torch, param_map, torch_to_nnx
from crosscheck.mutants import all_mutants
from crosscheck.registry import select
from helpers import np_rng, t64
from jax_layers import norm as JN
from torch_layers import norm as TN

# nnx.BatchNorm keeps float32 batch stats and writes float64 updates into them with a
# FutureWarning (flax's own behaviour, which ours avoids by casting first).
FLAX_F64_STATS = pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types:FutureWarning")


def _nhwc(a):
    return jnp.asarray(np.moveaxis(np.asarray(a), 1, -1))


def _nchw(a):
    return np.moveaxis(np.asarray(a), -1, 1)


# -- torch: gradcheck and gradgradcheck on the functionals ---------------------------------

LAYER_NORM = [((3, 1, 7), (7,)), ((2, 4, 1, 3), (1, 3)), ((6,), (6,))]


@pytest.mark.parametrize("x_shape,shape", LAYER_NORM, ids=str)
@pytest.mark.parametrize("affine", ["weight-bias", "weight", "none"])
def test_torch_layer_norm_gradcheck(x_shape, shape, affine):
    rng = np_rng()
    x = t64(rng.standard_normal(x_shape))
    w = t64(rng.standard_normal(shape)) if affine != "none" else None
    b = t64(rng.standard_normal(shape)) if affine == "weight-bias" else None
    fn = lambda x, w, b: TN.layer_norm(x, shape, w, b, eps=1e-5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("x_shape,shape", LAYER_NORM, ids=str)
@pytest.mark.parametrize("weight", [True, False], ids=["weight", "noweight"])
def test_torch_rms_norm_gradcheck(x_shape, shape, weight):
    rng = np_rng(1)
    x = t64(rng.standard_normal(x_shape))
    w = t64(rng.standard_normal(shape)) if weight else None
    fn = lambda x, w: TN.rms_norm(x, shape, w, eps=1e-6)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("x_shape,groups", [((2, 6, 3, 1), 3), ((3, 4, 5), 2), ((1, 4, 2, 3), 4), ((4, 2), 1)], ids=str)
def test_torch_group_norm_gradcheck(x_shape, groups):
    rng = np_rng(2)
    c = x_shape[1]
    x, w, b = t64(rng.standard_normal(x_shape)), t64(rng.standard_normal(c)), t64(rng.standard_normal(c))
    fn = lambda x, w, b: TN.group_norm(x, groups, w, b, eps=1e-5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("x_shape", [(3, 4, 2, 1), (5, 3), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_torch_batch_norm_gradcheck(x_shape, training):
    rng = np_rng(3)
    c = x_shape[1]
    x, w, b = t64(rng.standard_normal(x_shape)), t64(rng.standard_normal(c)), t64(rng.standard_normal(c))
    # Eval: the running statistics get their true gradients too (the built-in refuses them).
    mean, var = t64(rng.standard_normal(c), training is False), t64(rng.uniform(0.5, 2, c), training is False)
    if training:
        fn = lambda x, w, b: TN.batch_norm(x, None, None, w, b, training=True)  # noqa: E731
        args = (x, w, b)
    else:
        fn = lambda x, m, v, w, b: TN.batch_norm(x, m, v, w, b, training=False)  # noqa: E731
        args = (x, mean, var, w, b)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


# -- JAX: check_grads to second order -------------------------------------------------------


def _j(rng, shape):
    return jnp.asarray(rng.standard_normal(shape))


@pytest.mark.parametrize(
    "x_shape,red,feat",
    [((3, 1, 7), -1, -1), ((2, 4, 1, 3), (-2, -1), (-2, -1)), ((2, 3, 4), (1, 2), -1), ((6,), -1, -1)],
    ids=str,
)
@pytest.mark.parametrize("fast", [True, False], ids=["fast-var", "two-pass-var"])
def test_jax_layer_and_rms_norm_check_grads(x_shape, red, feat, fast):
    rng = np_rng(4)
    n = int(np.prod([x_shape[a] for a in np.atleast_1d(feat)]))
    x, s, b = _j(rng, x_shape), _j(rng, n), _j(rng, n)
    opts = {"reduction_axes": red, "feature_axes": feat, "use_fast_variance": fast}
    check_grads(lambda x, s, b: JN.layer_norm(x, s, b, epsilon=1e-5, **opts), (x, s, b), order=2, modes=["rev"])
    check_grads(lambda x: JN.layer_norm(x, epsilon=1e-5, **opts), (x,), order=2, modes=["rev"])
    check_grads(lambda x, s: JN.rms_norm(x, s, epsilon=1e-6, **opts), (x, s), order=2, modes=["rev"])


@pytest.mark.parametrize("x_shape,groups", [((2, 3, 1, 6), 3), ((3, 5, 4), 2), ((1, 2, 3, 4), 4)], ids=str)
def test_jax_group_norm_check_grads(x_shape, groups):
    rng = np_rng(5)
    c = x_shape[-1]
    x, s, b = _j(rng, x_shape), _j(rng, c), _j(rng, c)
    check_grads(lambda x, s, b: JN.group_norm(x, groups, s, b, epsilon=1e-5), (x, s, b), order=2, modes=["rev"])


@pytest.mark.parametrize("x_shape", [(3, 2, 1, 4), (5, 3)], ids=str)
def test_jax_batch_norm_check_grads(x_shape):
    rng = np_rng(6)
    c = x_shape[-1]
    x, s, b, m = _j(rng, x_shape), _j(rng, c), _j(rng, c), _j(rng, c)
    v = jnp.asarray(rng.uniform(0.5, 2, c))
    check_grads(lambda x, s, b: JN.batch_norm(x, scale=s, bias=b), (x, s, b), order=2, modes=["rev"])
    check_grads(
        lambda x, m, v, s, b: JN.batch_norm(x, m, v, s, b, use_running_average=True), (x, m, v, s, b), order=2, modes=["rev"]
    )


# -- torch drop-ins ------------------------------------------------------------------------


def _same_loss(f_ours, f_builtin, leaves, rtol=1e-12, atol=1e-12):
    """Forward and gradients of `sum(f(*leaves) * ct)` agree; None leaves are skipped."""
    ours = [None if a is None else a.detach().clone().requires_grad_() for a in leaves]
    theirs = [None if a is None else a.detach().clone().requires_grad_() for a in leaves]
    ya, yb = f_ours(*ours), f_builtin(*theirs)
    torch.testing.assert_close(ya, yb, rtol=rtol, atol=atol)
    ct = torch.randn(ya.shape, dtype=ya.dtype, generator=torch.Generator().manual_seed(0))
    (ya * ct).sum().backward()
    (yb * ct).sum().backward()
    for a, b in zip(ours, theirs):
        if a is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=rtol, atol=atol)


def test_torch_functionals_match_builtins():
    rng = np_rng(7)
    x, w, b = t64(rng.standard_normal((3, 2, 4))), t64(rng.standard_normal((2, 4))), t64(rng.standard_normal((2, 4)))
    _same_loss(lambda *a: TN.layer_norm(a[0], (2, 4), *a[1:]), lambda *a: F.layer_norm(a[0], (2, 4), *a[1:]), [x, w, b])
    _same_loss(lambda x, w: TN.rms_norm(x, 4, w[0]), lambda x, w: F.rms_norm(x, (4,), w[0]), [x, w])
    x4, c = t64(rng.standard_normal((2, 6, 3, 1))), t64(rng.standard_normal(6))
    _same_loss(lambda x, w, b: TN.group_norm(x, 2, w, b), lambda x, w, b: F.group_norm(x, 2, w, b), [x4, c, c * 2])
    _same_loss(
        lambda x, w, b: TN.batch_norm(x, None, None, w, b, True), lambda x, w, b: F.batch_norm(x, None, None, w, b, True),
        [x4, c, c * 2],
    )
    mean, var = torch.randn(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.5
    _same_loss(lambda x, w, b: TN.batch_norm(x, mean, var, w, b), lambda x, w, b: F.batch_norm(x, mean, var, w, b), [x4, c, c])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_torch_half_precision_keeps_the_dtype_and_stays_close(dtype):
    x = torch.randn(4, 6, 2, 3).to(dtype)
    w = torch.randn(6).to(dtype)
    for ours, theirs in [
        (TN.layer_norm(x, (2, 3)), F.layer_norm(x, (2, 3))),
        (TN.rms_norm(x, (3,)), F.rms_norm(x, (3,))),
        (TN.group_norm(x, 3, w, w), F.group_norm(x, 3, w, w)),
        (TN.batch_norm(x, None, None, w, w, True), F.batch_norm(x, None, None, w, w, True)),
    ]:
        assert ours.dtype == dtype
        torch.testing.assert_close(ours.double(), theirs.double(), rtol=1e-2, atol=1e-2)


def _assert_same_module_state(ours, builtin):
    a, b = ours.state_dict(), builtin.state_dict()
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    "make",
    [
        lambda nn, **f: nn.LayerNorm((1, 4), eps=1e-6, **f),
        lambda nn, **f: nn.LayerNorm(4, bias=False, **f),
        lambda nn, **f: nn.LayerNorm(4, elementwise_affine=False, **f),
        lambda nn, **f: nn.RMSNorm(4, **f),
        lambda nn, **f: nn.RMSNorm((1, 4), eps=1e-5, elementwise_affine=False, **f),
        lambda nn, **f: nn.GroupNorm(2, 4, **f),
        lambda nn, **f: nn.GroupNorm(4, 4, affine=False, **f),
        lambda nn, **f: nn.GroupNorm(1, 4, bias=False, **f),
    ],
    ids=["ln", "ln-nobias", "ln-noaffine", "rms", "rms-noweight", "gn", "gn-noaffine", "gn-nobias"],
)
def test_torch_modules_are_drop_ins(make):
    torch.manual_seed(0)
    builtin = make(torch.nn, dtype=torch.float64)
    torch.manual_seed(0)
    ours = make(TN, dtype=torch.float64)
    assert repr(ours).split("(", 1)[1] == repr(builtin).split("(", 1)[1]
    _assert_same_module_state(ours, builtin)
    with torch.no_grad():
        for p in builtin.parameters():
            p.copy_(torch.randn_like(p))
    ours.load_state_dict(builtin.state_dict())
    x = torch.randn(3, 4, 1, 4, dtype=torch.float64)
    _same_loss(lambda x: ours(x), lambda x: builtin(x), [x])
    for (name, p), q in zip(ours.named_parameters(), builtin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12, msg=name)
    ours.reset_parameters()
    builtin.reset_parameters()
    _assert_same_module_state(ours, builtin)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None], ids=["m0.1", "m0.3", "cumulative"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_torch_batch_norm_2d_running_stats_match_builtin(momentum, affine):
    builtin = torch.nn.BatchNorm2d(3, momentum=momentum, affine=affine, dtype=torch.float64)
    ours = TN.BatchNorm2d(3, momentum=momentum, affine=affine, dtype=torch.float64)
    _assert_same_module_state(ours, builtin)
    gen = torch.Generator().manual_seed(1)
    for step in range(2):
        x = torch.randn(4, 3, 2, 1, dtype=torch.float64, generator=gen) * 2 + 1
        _same_loss(lambda x: ours(x), lambda x: builtin(x), [x])
        # The unbiased variance goes into running_var; num_batches_tracked counts steps.
        _assert_same_module_state(ours, builtin)
        assert int(ours.num_batches_tracked) == step + 1
    ours.eval()
    builtin.eval()
    x = torch.randn(2, 3, 1, 2, dtype=torch.float64, generator=gen)
    _same_loss(lambda x: ours(x), lambda x: builtin(x), [x])
    _assert_same_module_state(ours, builtin)


def test_torch_batch_norm_2d_without_running_stats_and_loading():
    builtin = torch.nn.BatchNorm2d(3, track_running_stats=False, dtype=torch.float64).eval()
    ours = TN.BatchNorm2d(3, track_running_stats=False, dtype=torch.float64).eval()
    assert ours.running_mean is None and ours.num_batches_tracked is None
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    # No running statistics: batch statistics even in eval.
    _same_loss(lambda x: ours(x), lambda x: builtin(x), [x])
    trained = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    trained(torch.randn(5, 3, 2, 2, dtype=torch.float64))
    ours = TN.BatchNorm2d(3, dtype=torch.float64)
    ours.load_state_dict(trained.state_dict())
    _assert_same_module_state(ours, trained)
    state = trained.state_dict()
    del state["num_batches_tracked"]
    state._metadata[""]["version"] = 1  # a state dict from before the counter existed
    ours.load_state_dict(state)
    assert int(ours.num_batches_tracked) == 0


def test_torch_functional_batch_norm_updates_running_stats_in_place():
    x = torch.randn(5, 3, 2, 1, dtype=torch.float64)
    rm_a, rv_a = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    rm_b, rv_b = rm_a.clone(), rv_a.clone()
    ya = TN.batch_norm(x, rm_a, rv_a, training=True, momentum=0.2)
    yb = F.batch_norm(x, rm_b, rv_b, training=True, momentum=0.2)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rm_a, rm_b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rv_a, rv_b, rtol=1e-12, atol=1e-12)
    assert not rm_a.requires_grad and not rv_a.requires_grad


def test_torch_empty_and_unbatched_like_builtin():
    for x, shape in [(torch.randn(0, 4, dtype=torch.float64), (4,)), (torch.randn(4, dtype=torch.float64), (4,))]:
        torch.testing.assert_close(TN.layer_norm(x, shape), F.layer_norm(x, shape))
        torch.testing.assert_close(TN.rms_norm(x, shape), F.rms_norm(x, shape))
    x = torch.randn(0, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    w = torch.ones(4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(TN.group_norm(x, 2, w, w), F.group_norm(x, 2, w, w))
    TN.group_norm(x, 2, w, w).sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros(4, dtype=torch.float64))
    # An empty training batch leaves the running statistics alone, as the built-in does.
    ours, builtin = TN.BatchNorm2d(4, dtype=torch.float64), torch.nn.BatchNorm2d(4, dtype=torch.float64)
    assert ours(x).shape == builtin(x).shape == x.shape
    _assert_same_module_state(ours, builtin)


def test_torch_bad_arguments_name_the_argument():
    x = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match="`normalized_shape`"):
        TN.layer_norm(x, (4,))
    with pytest.raises(ValueError, match="`weight`"):
        TN.layer_norm(x, (3,), torch.ones(4))
    with pytest.raises(ValueError, match="`normalized_shape`"):
        TN.rms_norm(x, ())
    with pytest.raises(ValueError, match="`num_groups`"):
        TN.group_norm(x, 3)
    with pytest.raises(ValueError, match="`num_groups`"):
        TN.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="`input`"):
        TN.group_norm(torch.randn(4), 2)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        TN.batch_norm(torch.randn(1, 4, 1, 1), None, None, training=True)
    with pytest.raises(ValueError, match="`running_mean`"):
        TN.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="`running_var`"):
        TN.batch_norm(x, torch.zeros(4), torch.ones(3))
    with pytest.raises(ValueError, match="`eps`"):
        TN.batch_norm(x, None, None, training=True, eps=0.0)
    with pytest.raises(ValueError, match="4D input"):
        TN.BatchNorm2d(4)(x)


# -- nnx drop-ins --------------------------------------------------------------------------

NNX = [
    ("LayerNorm", (6,), {}, (3, 1, 6)),
    ("LayerNorm", (8,), {"reduction_axes": (-2, -1), "feature_axes": (-2, -1), "use_bias": False}, (3, 2, 4)),
    ("LayerNorm", (4,), {"reduction_axes": (1, 2), "use_fast_variance": False, "epsilon": 1e-3}, (2, 3, 4)),
    ("RMSNorm", (6,), {}, (3, 1, 6)),
    ("RMSNorm", (6,), {"use_scale": False, "epsilon": 1e-5}, (2, 6)),
    ("GroupNorm", (6, 3), {}, (2, 3, 1, 6)),
    ("GroupNorm", (4,), {"num_groups": None, "group_size": 2, "use_fast_variance": False}, (3, 5, 4)),
    ("GroupNorm", (4, 1), {"use_scale": False, "reduction_axes": (1, 2, 3)}, (2, 2, 3, 4)),
]
NNX_IDS = ["ln", "ln-2d-nobias", "ln-two-pass", "rms", "rms-noscale", "gn", "gn-group-size", "gn-1group"]


def _loss_and_grads(module, x):
    def loss(model, x):
        return jnp.sum(jnp.sin(model(x)))

    return nnx.value_and_grad(loss, argnums=(0, 1))(module, x)


def _assert_trees_close(a, b, rtol=1e-12, atol=1e-12):
    for pa, pb in zip(jax.tree.leaves(nnx.to_pure_dict(a)), jax.tree.leaves(nnx.to_pure_dict(b)), strict=True):
        np.testing.assert_allclose(pa, pb, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,args,kw,x_shape", NNX, ids=NNX_IDS)
def test_nnx_modules_are_drop_ins(name, args, kw, x_shape):
    rngs_a, rngs_b = nnx.Rngs(3), nnx.Rngs(3)
    builtin = getattr(nnx, name)(*args, param_dtype=jnp.float64, **kw, rngs=rngs_a)
    ours = getattr(JN, name)(*args, param_dtype=jnp.float64, **kw, rngs=rngs_b)
    _assert_trees_close(nnx.state(ours), nnx.state(builtin), rtol=0, atol=0)
    # Same keys drawn in the same order: the streams continue identically.
    np.testing.assert_array_equal(jax.random.key_data(rngs_a.params()), jax.random.key_data(rngs_b.params()))
    for p, q in zip(jax.tree.leaves(nnx.state(ours, nnx.Param)), jax.tree.leaves(nnx.state(builtin, nnx.Param))):
        assert p.shape == q.shape
    rng = np_rng(8)
    for var in jax.tree.leaves(nnx.state(builtin, nnx.Param), is_leaf=lambda v: isinstance(v, nnx.Variable)):
        var.set_value(jnp.asarray(rng.standard_normal(var.get_value().shape)))
    nnx.update(ours, nnx.state(builtin))
    x = jnp.asarray(rng.standard_normal(x_shape) * 2 + 1)
    (va, (ga, gxa)), (vb, (gb, gxb)) = _loss_and_grads(ours, x), _loss_and_grads(builtin, x)
    np.testing.assert_allclose(va, vb, rtol=1e-12)
    np.testing.assert_allclose(gxa, gxb, rtol=1e-10, atol=1e-12)
    _assert_trees_close(ga, gb, rtol=1e-10)


@FLAX_F64_STATS
@pytest.mark.parametrize("momentum,axis,x_shape", [(0.99, -1, (4, 2, 1, 3)), (0.5, 1, (5, 3, 2))], ids=str)
def test_nnx_batch_norm_train_step_and_eval_match_builtin(momentum, axis, x_shape):
    kw = {"momentum": momentum, "axis": axis, "param_dtype": jnp.float64}
    builtin = nnx.BatchNorm(3, **kw, rngs=nnx.Rngs(0))
    ours = JN.BatchNorm(3, **kw, rngs=nnx.Rngs(0))
    _assert_trees_close(nnx.state(ours), nnx.state(builtin), rtol=0, atol=0)
    rng = np_rng(9)
    x = jnp.asarray(rng.standard_normal(x_shape) * 2 + 1)
    (va, (ga, gxa)), (vb, (gb, gxb)) = _loss_and_grads(ours, x), _loss_and_grads(builtin, x)
    np.testing.assert_allclose(va, vb, rtol=1e-12)
    np.testing.assert_allclose(gxa, gxb, rtol=1e-10, atol=1e-12)
    _assert_trees_close(ga, gb, rtol=1e-10)
    # One step moved the batch stats the same way: momentum keeps the old share, biased var.
    assert not np.allclose(ours.mean[...], 0)
    np.testing.assert_allclose(ours.mean[...], builtin.mean[...], rtol=1e-6)
    np.testing.assert_allclose(ours.var[...], builtin.var[...], rtol=1e-6)
    red = tuple(a for a in range(len(x_shape)) if a != axis % len(x_shape))
    np.testing.assert_allclose(ours.var[...], momentum + (1 - momentum) * np.var(np.asarray(x), axis=red), rtol=1e-6)
    ours.eval()
    builtin.eval()
    np.testing.assert_allclose(ours(x), builtin(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours(x, use_running_average=False), builtin(x, use_running_average=False), rtol=1e-12, atol=1e-12)


def test_nnx_bad_arguments_name_the_argument():
    x = jnp.ones((2, 3, 4))
    with pytest.raises(ValueError, match="`num_groups`"):
        JN.GroupNorm(4, num_groups=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`group_size`"):
        JN.GroupNorm(4, num_groups=2, group_size=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`num_groups`"):
        JN.group_norm(x, 3)
    with pytest.raises(ValueError, match="`scale`"):
        JN.layer_norm(x, jnp.ones(3))
    with pytest.raises(ValueError, match="`reduction_axes`"):
        JN.layer_norm(x, reduction_axes=3)
    with pytest.raises(ValueError, match="`mean`"):
        JN.batch_norm(x, use_running_average=True)
    with pytest.raises(ValueError, match="`axis_name`"):
        JN.BatchNorm(4, axis_name="batch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`mask`"):
        JN.LayerNorm(4, rngs=nnx.Rngs(0))(x, mask=jnp.ones_like(x, bool))


# -- weights between the built-ins ---------------------------------------------------------


def _randomized(module):
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    return module


@FLAX_F64_STATS
@pytest.mark.parametrize(
    "torch_make,flax_make,x_shape,nhwc",
    [
        (lambda: torch.nn.LayerNorm((2, 3), eps=1e-6),
         lambda **kw: nnx.LayerNorm(6, reduction_axes=(-2, -1), feature_axes=(-2, -1), **kw), (4, 2, 3), False),
        (lambda: torch.nn.RMSNorm((1, 3), eps=1e-6),
         lambda **kw: nnx.RMSNorm(3, reduction_axes=(-2, -1), feature_axes=(-2, -1), **kw), (4, 1, 3), False),
        (lambda: torch.nn.GroupNorm(2, 4, eps=1e-6), lambda **kw: nnx.GroupNorm(4, 2, **kw), (3, 4, 2, 1), True),
        (lambda: torch.nn.BatchNorm2d(4).eval(), lambda **kw: nnx.BatchNorm(4, use_running_average=True, **kw), (3, 4, 2, 1), True),
    ],
    ids=["LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm2d"],
)
def test_weights_port_between_builtins_both_ways(torch_make, flax_make, x_shape, nhwc):
    torch_mod = _randomized(torch_make().double())
    flax_mod = flax_make(param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_mod, flax_mod)
    x = np_rng(10).standard_normal(x_shape)
    y_flax = flax_mod(_nhwc(x) if nhwc else jnp.asarray(x))
    y_torch = torch_mod(torch.from_numpy(x)).detach().numpy()
    # Flax's BatchNorm stats are float32: the running statistics round on the way in.
    tol = 1e-6 if isinstance(flax_mod, nnx.BatchNorm) else 1e-12
    np.testing.assert_allclose(_nchw(y_flax) if nhwc else y_flax, y_torch, rtol=tol, atol=tol)
    back = torch_make().double()
    nnx_to_torch(flax_mod, back)
    for name, t in torch_mod.state_dict().items():
        if t.is_floating_point():
            torch.testing.assert_close(back.state_dict()[name], t, rtol=tol, atol=tol, msg=name)


def test_batch_norm_map_covers_running_stats_and_affine():
    mod = torch.nn.BatchNorm2d(3)
    state = {k: v.double().numpy() for k, v in _randomized(mod).state_dict().items() if v.is_floating_point()}
    flax_side = param_map(mod).to_nnx(state)
    assert set(flax_side) == {"scale", "bias", "mean", "var"}
    np.testing.assert_array_equal(flax_side["mean"], state["running_mean"])
    np.testing.assert_array_equal(flax_side["var"], state["running_var"])
    np.testing.assert_array_equal(flax_side["scale"], state["weight"])
    np.testing.assert_array_equal(flax_side["bias"], state["bias"])
    for mod, shape in [(torch.nn.LayerNorm((2, 3)), (6,)), (torch.nn.RMSNorm((2, 3)), (6,)), (torch.nn.GroupNorm(1, 4), (4,))]:
        got = param_map(mod).to_nnx({"weight": np.arange(np.prod(mod.weight.shape), dtype=float).reshape(mod.weight.shape)})
        assert set(got) == {"scale"} and got["scale"].shape == shape


# -- the planted bugs ----------------------------------------------------------------------

MUTANTS = [m for m in all_mutants() if m.case in {c.name for c in select(["norm"])}]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 3)])
def test_batch_norm_takes_an_empty_input_of_any_rank_like_builtin(shape, training):
    """torch's batch_norm takes an empty input, 1-d included (one of its OpInfo samples), and
    a non-empty 1-d one is refused by both."""
    c = shape[1] if len(shape) > 1 else 0
    stats = [torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)]
    x1 = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    x2 = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    ours = TN.batch_norm(x1, *[s.clone() for s in stats], training=training)
    builtin = F.batch_norm(x2, *[s.clone() for s in stats], training=training)
    assert ours.shape == builtin.shape == shape and ours.dtype == builtin.dtype
    ours.sum().backward()
    builtin.sum().backward()
    assert x1.grad.shape == x2.grad.shape == shape
    with pytest.raises(ValueError, match=r"`input` \(shape \(5,\)\) must have at least 2 dims"):
        TN.batch_norm(torch.randn(5), None, None, training=True)
    with pytest.raises(IndexError):
        F.batch_norm(torch.randn(5), None, None, training=True)
