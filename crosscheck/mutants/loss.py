"""Planted bugs in the losses' backward passes."""

from __future__ import annotations

import importlib

from ..cases.loss import CLASS_WEIGHTS
from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")
# The registered cases' options: (reduction, label_smoothing, ignore_index, weighted).
CE = ("mean", 0.0, -100, False)  # "cross_entropy"
CE_SUM = ("sum", 0.1, 1, True)  # "cross_entropy-sum"
CE_SOFT = ("mean", 0.2, -100, True)  # "cross_entropy-soft"


def _L():
    return importlib.import_module("jax_layers.loss")


def _torch_ce(backward, options):
    import torch

    from torch_layers.loss import CrossEntropyFunction

    reduction, eps, ignore_index, weighted = options
    cls = torch_with_backward(CrossEntropyFunction, backward)

    def fn(input, target):
        n_classes = input.shape[0 if input.dim() == 1 else 1]
        w = torch.tensor(CLASS_WEIGHTS[:n_classes], dtype=input.dtype, device=input.device) if weighted else None
        return cls.apply(input, target, w, reduction, eps, ignore_index)

    return fn


def _jax_ce(bwd, options):
    L = _L()
    reduction, eps, ignore_index, weighted = options
    f = jax_with_bwd(L._cross_entropy, L._cross_entropy_fwd, bwd, nondiff_argnums=(0, 1, 2, 3))

    def fn(logits, labels):
        import jax.numpy as jnp

        w = jnp.asarray(CLASS_WEIGHTS[: logits.shape[-1]], logits.dtype) if weighted else None
        return f(reduction, eps, ignore_index, logits.ndim - 1, logits, labels, w)

    return fn


def ce_grad_without_softmax():
    from torch_layers.loss import _soft_targets

    def backward(ctx, g):
        input, target, weight = ctx.saved_tensors
        reduction, eps, ignore_index = ctx.options
        q, share = _soft_targets(input, target, weight, eps, ignore_index, input.dtype)
        # d(-sum q log p)/dx taken as -q: the log-sum-exp term (p sum q) is dropped.
        return -(g / share.sum()) * q, None, None, None, None, None

    return _torch_ce(backward, CE)


def ce_mean_counts_ignored():
    L = _L()

    def bwd(reduction, eps, ignore_index, axis, res, g):
        logits, labels, weight = res
        grad, *rest = L._cross_entropy_bwd("sum", eps, ignore_index, axis, res, g)
        # Divides by every target, ignored ones included, instead of the counted weight.
        return (grad / labels.size).astype(logits.dtype), *rest

    return _jax_ce(bwd, CE)


def ce_smoothing_wrong_constant():
    import torch

    from torch_layers.loss import _soft_targets

    def backward(ctx, g):
        input, target, weight = ctx.saved_tensors
        reduction, eps, ignore_index = ctx.options
        n_classes = input.shape[1]
        # eps spread over the C - 1 other classes, where the forward spreads it over all C.
        q, _ = _soft_targets(input, target, weight, eps * n_classes / (n_classes - 1), ignore_index, input.dtype)
        p = torch.softmax(input, 1)
        return g * (p * q.sum(1, keepdim=True) - q), None, None, None, None, None

    return _torch_ce(backward, CE_SUM)


def ce_soft_target_grad_unsmoothed():
    import torch

    from torch_layers.loss import CrossEntropyFunction

    def backward(ctx, g):
        input, target, weight = ctx.saved_tensors
        grad_input, grad_target, *rest = CrossEntropyFunction.backward(ctx, g)
        # The target's gradient -w log p without the (1 - eps) that the smoothing scales it by.
        n_samples = input.numel() // input.shape[1]
        log_p = torch.log_softmax(input, 1)
        return grad_input, -(g / n_samples) * weight.view(1, -1, *[1] * (input.dim() - 2)) * log_p, *rest

    return _torch_ce(backward, CE_SOFT)


def ce_soft_target_grad_unweighted():
    L = _L()

    def bwd(reduction, eps, ignore_index, axis, res, g):
        logits, labels, weight = res
        grad, grad_labels, rest = L._cross_entropy_bwd(reduction, eps, ignore_index, axis, res, g)
        # The class weights left out of the target's gradient (they still scale the input's).
        w = L._weight_view(logits, weight, axis, logits.dtype)
        return grad, grad_labels / w, rest

    return _jax_ce(bwd, CE_SOFT)


def mse_grad_missing_factor_two():
    L = _L()

    def bwd(reduction, res, g):
        gx, gt = L._mse_bwd(reduction, res, g)
        return gx / 2, gt / 2  # d/dx (x - t)^2 taken as (x - t)

    f = jax_with_bwd(L._mse, L._mse_fwd, bwd, nondiff_argnums=(0,))
    return lambda x, t: f("mean", x, t)


def mse_broadcast_grad_averaged():
    import jax.numpy as jnp

    L = _L()

    def mean_to(a, shape):  # `_sum_to` with mean for sum: a broadcast copy's share, not its total
        a = jnp.mean(a, axis=tuple(range(a.ndim - len(shape))))
        stretched = tuple(i for i, s in enumerate(shape) if s == 1 and a.shape[i] != 1)
        return jnp.mean(a, axis=stretched, keepdims=True)

    def bwd(reduction, res, g):
        x, target = res
        grad = 2 * g * (x - target) / (jnp.size(x - target) if reduction == "mean" else 1)
        return mean_to(grad, x.shape), mean_to(-grad, target.shape)

    f = jax_with_bwd(L._mse, L._mse_fwd, bwd, nondiff_argnums=(0,))
    return lambda x, t: f("mean", x, t)


def mse_target_grad_sign():
    from torch_layers.loss import MSEFunction

    def backward(ctx, g):
        input, target = ctx.saved_tensors
        grad = 2 * g * (input - target)
        return grad, grad.clone(), None  # the target's gradient given the input's sign

    cls = torch_with_backward(MSEFunction, backward)
    return lambda x, t: cls.apply(x, t, "sum")


for _name, _case, _side, _make, _desc in [
    ("ce-grad-without-softmax", "cross_entropy", "torch", ce_grad_without_softmax,
     "cross-entropy gradient -q, without the softmax term p sum q"),
    ("ce-mean-counts-ignored", "cross_entropy", "jax", ce_mean_counts_ignored,
     "mean divides by all targets, ignored ones included"),
    ("ce-smoothing-wrong-constant", "cross_entropy-sum", "torch", ce_smoothing_wrong_constant,
     "label smoothing eps / (C - 1) in the backward, eps / C in the forward"),
    ("ce-soft-target-grad-unsmoothed", "cross_entropy-soft", "torch", ce_soft_target_grad_unsmoothed,
     "class-probability target gradient -w log p, without the (1 - eps) of label smoothing"),
    ("ce-soft-target-grad-unweighted", "cross_entropy-soft", "jax", ce_soft_target_grad_unweighted,
     "class-probability target gradient without the class weights"),
    ("mse-grad-missing-factor-2", "mse", "jax", mse_grad_missing_factor_two,
     "MSE gradient (x - t) instead of 2 (x - t)"),
    ("mse-target-grad-sign", "mse-sum", "torch", mse_target_grad_sign,
     "MSE target gradient with the input's sign"),
    ("mse-broadcast-grad-averaged", "mse-broadcast", "jax", mse_broadcast_grad_averaged,
     "MSE gradients averaged, not summed, over the dims broadcasting added or stretched"),
]:
    register_mutant(Mutant(f"loss/{_name}", _case, _side, _make(), VALUES, _desc))
