"""Planted bugs in the normalization layers' backward passes."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")
# Options of the registered cases the mutants replace a side of.
GROUP_NORM = (3, 1e-5)  # "group_norm": groups, eps
BATCH_NORM_EPS = 1e-5  # "batch_norm", "batch_norm-eval", "batch_norm-eval-stats"
LAYER_NORM_EPS, RMS_NORM_EPS = 1e-5, 1e-6  # "layer_norm", "rms_norm"


def _T():
    return importlib.import_module("torch_layers.norm")


def _J():
    return importlib.import_module("jax_layers.norm")


def _recomputed(ctx, input, dims, center):
    """`(xhat, rstd)` in the compute dtype, as the real backward recomputes them."""
    N = _T()
    return N._normalized(input.to(N._compute_dtype(input.dtype)), dims, ctx.eps, center)


def layer_norm_without_mean_term():
    N = _T()

    def backward(ctx, g):
        input, weight = ctx.saved_tensors
        _, _, gw, gb, _ = N.LayerNormFunction.backward(ctx, g)
        dims = N._trailing(input.dim(), len(ctx.normalized_shape))
        xhat, rstd = _recomputed(ctx, input, dims, True)
        gxhat = g.to(xhat.dtype) * weight.to(xhat.dtype)
        # Centered xhat, but the gradient through the mean (- mean(gxhat)) is left out.
        gi = N._xhat_backward(gxhat, xhat, rstd, dims, False).to(input.dtype)
        return gi, None, gw, gb, None

    cls = torch_with_backward(N.LayerNormFunction, backward)
    return lambda x, w, b: cls.apply(x, tuple(w.shape), w, b, LAYER_NORM_EPS)


def batch_norm_statistics_constant():
    N = _T()

    def backward(ctx, g):
        input, weight = ctx.saved_tensors
        _, gw, gb, _ = N.BatchNormFunction.backward(ctx, g)
        _, rstd = _recomputed(ctx, input, N._but_channel(input.dim()), True)
        # As if the batch mean and variance were constants, as they are in eval mode.
        gi = (g.to(rstd.dtype) * N._channel_view(weight, input.dim()).to(rstd.dtype) * rstd).to(input.dtype)
        return gi, gw, gb, None

    cls = torch_with_backward(N.BatchNormFunction, backward)
    return lambda x, w, b: cls.apply(x, w, b, BATCH_NORM_EPS)


def rms_norm_weight_grad_not_summed():
    N = _T()

    def backward(ctx, g):
        input, weight = ctx.saved_tensors
        gi, _, _, _ = N.RMSNormFunction.backward(ctx, g)
        xhat, _ = _recomputed(ctx, input, N._trailing(input.dim(), len(ctx.normalized_shape)), False)
        # (..., *normalized_shape) instead of normalized_shape: autograd sums it silently.
        return gi, None, (g.to(xhat.dtype) * xhat).to(weight.dtype), None

    cls = torch_with_backward(N.RMSNormFunction, backward)
    return lambda x, w: cls.apply(x, tuple(w.shape), w, RMS_NORM_EPS)


def group_norm_weight_grad_from_input():
    N = _T()
    groups, eps = GROUP_NORM

    def backward(ctx, g):
        input, weight = ctx.saved_tensors
        gi, _, _, gb, _ = N.GroupNormFunction.backward(ctx, g)
        # The weight multiplies xhat, but its gradient is taken against the raw input.
        gw = (g * input).sum(N._but_channel(input.dim())).to(weight.dtype)
        return gi, None, gw, gb, None

    cls = torch_with_backward(N.GroupNormFunction, backward)
    return lambda x, w, b: cls.apply(x, groups, w, b, eps)


def jax_group_norm_stats_wrong_axis():
    L = _J()
    groups, eps = GROUP_NORM

    def bwd(cfg, groups, res, g):
        # Grouped (N, H, W, G, C // G): the mean terms reduce over the groups axis instead of
        # the channels within each group.
        wrong = cfg._replace(reduction=(*cfg.reduction[:-1], cfg.reduction[-1] - 1))
        return L._group_norm_bwd(wrong, groups, res, g)

    f = jax_with_bwd(L._group_norm_impl, L._group_norm_fwd, bwd, nondiff_argnums=(0, 1))
    return lambda x, s, b: f(L._group_config(x, groups, None, eps, True), groups, x, s, b)


def jax_batch_norm_statistics_constant():
    L = _J()

    def bwd(cfg, res, g):
        x, mean, rstd, scale, bias = res
        _, gscale, gbias = L._norm_bwd(cfg, res, g)
        fshape = L._feature_shape(cfg, x.shape)
        # dL/dx = g * scale * rstd: right in eval mode, wrong with batch statistics.
        gx = (g.astype(rstd.dtype) * scale.reshape(fshape).astype(rstd.dtype) * rstd).astype(x.dtype)
        return gx, gscale, gbias

    f = jax_with_bwd(L._norm_impl, L._norm_fwd, bwd, nondiff_argnums=(0,))
    return lambda x, s, b: f(L._batch_config(x, -1, BATCH_NORM_EPS, True), x, s, b)


def jax_rms_norm_bwd_centered():
    L = _J()

    def bwd(cfg, res, g):
        # LayerNorm's backward reused: subtracts mean(gxhat), though RMSNorm never centers.
        return L._norm_bwd(cfg._replace(use_mean=True), res, g)

    f = jax_with_bwd(L._norm_impl, L._norm_fwd, bwd, nondiff_argnums=(0,))
    return lambda x, s: f(L._config(x, -1, -1, RMS_NORM_EPS, False, True), x, s, None)


def jax_batch_norm_eval_input_grad_without_scale():
    L = _J()

    def bwd(cfg, res, g):
        x, *_ = res
        _, *rest = L._batch_norm_eval_bwd(cfg, res, g)
        _, rstd = L._eval_parts(cfg, *res[:3])
        return ((g.astype(rstd.dtype) * rstd).astype(x.dtype), *rest)

    f = jax_with_bwd(L._batch_norm_eval_impl, L._batch_norm_eval_fwd, bwd, nondiff_argnums=(0,))
    return lambda x, s, b, m, v: f(L._batch_config(x, -1, BATCH_NORM_EPS, True), x, m, v, s, b)


def batch_norm_eval_mean_grad_sign():
    N = _T()

    def backward(ctx, g):
        grads = list(N.BatchNormEvalFunction.backward(ctx, g))
        if grads[1] is not None:
            grads[1] = -grads[1]  # dL/dmean = +sum(gxhat) rstd: the minus sign of x - mean dropped
        return tuple(grads)

    cls = torch_with_backward(N.BatchNormEvalFunction, backward)
    return lambda x, w, b, m, v: cls.apply(x, m, v, w, b, BATCH_NORM_EPS)


def jax_batch_norm_eval_var_grad_without_half():
    L = _J()

    def bwd(cfg, res, g):
        gx, gmean, gvar, *rest = L._batch_norm_eval_bwd(cfg, res, g)
        return (gx, gmean, 2 * gvar, *rest)  # d rsqrt(v)/dv = -rsqrt(v)^3, the 1/2 forgotten

    f = jax_with_bwd(L._batch_norm_eval_impl, L._batch_norm_eval_fwd, bwd, nondiff_argnums=(0,))
    return lambda x, s, b, m, v: f(L._batch_config(x, -1, BATCH_NORM_EPS, True), x, m, v, s, b)


for _name, _case, _side, _make, _expect, _desc in [
    ("layer_norm-no-mean-term", "layer_norm", "torch", layer_norm_without_mean_term, VALUES,
     "LayerNorm input gradient without the term through the mean"),
    ("batch_norm-statistics-constant", "batch_norm", "torch", batch_norm_statistics_constant, VALUES,
     "BatchNorm (training) input gradient treats the batch mean and variance as constants"),
    ("rms_norm-weight-grad-not-summed", "rms_norm", "torch", rms_norm_weight_grad_not_summed, ("grad-contract",),
     "RMSNorm weight gradient not summed over the leading dims"),
    ("group_norm-weight-grad-from-input", "group_norm", "torch", group_norm_weight_grad_from_input, VALUES,
     "GroupNorm weight gradient from the input instead of the normalized input"),
    ("jax-group_norm-stats-wrong-axis", "group_norm", "jax", jax_group_norm_stats_wrong_axis, VALUES,
     "GroupNorm bwd reduces over the groups axis instead of within each group"),
    ("jax-batch_norm-statistics-constant", "batch_norm", "jax", jax_batch_norm_statistics_constant, VALUES,
     "BatchNorm (training) bwd treats the batch mean and variance as constants"),
    ("jax-rms_norm-bwd-centered", "rms_norm", "jax", jax_rms_norm_bwd_centered, VALUES,
     "RMSNorm bwd subtracts the mean of the gradient, as LayerNorm's does"),
    ("jax-batch_norm-eval-no-scale", "batch_norm-eval", "jax", jax_batch_norm_eval_input_grad_without_scale, VALUES,
     "BatchNorm (eval) input gradient without the scale"),
    ("batch_norm-eval-mean-grad-sign", "batch_norm-eval-stats", "torch", batch_norm_eval_mean_grad_sign, VALUES,
     "BatchNorm (eval) running mean gradient with the wrong sign"),
    ("jax-batch_norm-eval-var-grad-without-half", "batch_norm-eval-stats", "jax",
     jax_batch_norm_eval_var_grad_without_half, VALUES, "BatchNorm (eval) running variance gradient twice too large"),
]:
    register_mutant(Mutant(f"norm/{_name}", _case, _side, _make(), _expect, _desc))
