"""Cases for losses: cross entropy (torch `(N, C, d...)` <-> JAX channels-last) and MSE
(also with a target that broadcasts against the input).

Class weights are constants of the case, chosen exactly representable in bfloat16, so every
dtype and the float64 oracle see the same weights. Targets are class indices (not
differentiable) with `ignore_index` drawn among them, or class probabilities (soft labels,
differentiable, of the logits' shape and layout).
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np

from ..draw import uniform
from ..layout import IDENTITY, permute
from ..registry import Case, Tensor, register

CLASS_WEIGHTS = (0.5, 1.25, 2.0, 0.75, 1.5)


def _labels(n_classes, ignore_index, rng, shape):
    """Class indices; with `ignore_index`, each trial has it at least once and one counted target.
    A draw: module-level, its options bound by `functools.partial`, so that it pickles."""
    y = rng.integers(0, n_classes, shape)
    if ignore_index is None:
        return y
    y = np.where(rng.random(shape) < 0.3, ignore_index, y)
    flat = y.reshape(shape[0], -1)
    flat[:, -1] = ignore_index
    first = rng.integers(0, n_classes, shape[0])
    flat[:, 0] = np.where(first == ignore_index, (first + 1) % n_classes, first)
    return flat.reshape(shape)


# The cases' functions are module-level, their options bound by `functools.partial` in
# `_ce_case` and `_mse_case`: they then pickle by reference, which closures do not.
# `class_weights` (a tuple or None) are constants of the case, not inputs: each call makes
# them an array of its own dtype and device.


def _torch_weights(class_weights, dtype, device):
    import torch

    return None if class_weights is None else torch.tensor(class_weights, dtype=dtype, device=device)


def _jax_weights(class_weights, dtype):
    import jax.numpy as jnp

    return None if class_weights is None else jnp.asarray(class_weights, dtype)


def _ce_torch(input, target, *, class_weights, **opts):
    from torch_layers.loss import cross_entropy

    return cross_entropy(input, target, _torch_weights(class_weights, input.dtype, input.device), **opts)


def _ce_torch_ref(input, target, *, class_weights, **opts):
    import torch.nn.functional as F

    return F.cross_entropy(input, target, _torch_weights(class_weights, input.dtype, input.device), **opts)


def _ce_jax(logits, labels, *, class_weights, **opts):
    from jax_layers.loss import cross_entropy

    return cross_entropy(logits, labels, weight=_jax_weights(class_weights, logits.dtype), **opts)


def _jax_reduced(loss, reduction):
    import jax.numpy as jnp

    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda a: a}[reduction](loss)


def _ce_jax_ref(logits, labels, *, class_weights, n_classes, soft, reduction, label_smoothing, ignore_index):
    import jax
    import jax.numpy as jnp

    log_p = jax.nn.log_softmax(logits, axis=-1)
    cw = jnp.ones(n_classes, logits.dtype) if class_weights is None else _jax_weights(class_weights, logits.dtype)
    if soft:
        loss = -jnp.sum(cw * ((1 - label_smoothing) * labels + label_smoothing / n_classes) * log_p, axis=-1)
        return _jax_reduced(loss, reduction)
    kept = labels != ignore_index
    safe = jnp.where(kept, labels, 0)
    nll = -jnp.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0] * cw[safe]
    smooth = -jnp.sum(log_p * cw, axis=-1)
    loss = jnp.where(kept, (1 - label_smoothing) * nll + label_smoothing / n_classes * smooth, 0)
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(jnp.where(kept, cw[safe], 0))
    return jnp.sum(loss) if reduction == "sum" else loss


def _ce_torch_module(dtype, device, *, class_weights, **opts):
    from torch_layers.loss import CrossEntropyLoss

    return CrossEntropyLoss(_torch_weights(class_weights, dtype, device), **opts)


def _ce_jax_module(dtype, *, class_weights, **opts):
    from jax_layers.loss import CrossEntropyLoss

    return CrossEntropyLoss(weight=_jax_weights(class_weights, dtype), **opts)


def _ce_inputs(shape, n_classes, ignore_index, soft):
    """The logits `(N, C, d...)`, then the targets: class probabilities of the logits' shape,
    or class indices `(N, d...)` with `ignore_index` (None: not drawn) among them."""
    # Classes move last for JAX: (N, C, d1, ...) -> (N, d1, ..., C).
    layout = IDENTITY if len(shape) <= 2 else permute(0, *range(2, len(shape)), 1)
    if soft:
        target = Tensor("target", shape, layout=layout, draw=uniform(0.0, 1.0))
    else:
        target_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
        labels = functools.partial(_labels, n_classes, ignore_index)
        target = Tensor("target", target_shape, kind="int", differentiable=False, draw=labels)
    return Tensor("input", shape, layout=layout), target


def _ce_case(name, shape, *, reduction="mean", weight=False, label_smoothing=0.0, ignore_index=-100,
             draw_ignored=True, soft=False):
    """With `soft`, the targets are class probabilities: positive, not normalised (torch
    does not ask for it), and they get gradients."""
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    w = CLASS_WEIGHTS[:n_classes] if weight else None
    opts = {"reduction": reduction, "label_smoothing": label_smoothing, "ignore_index": ignore_index}
    return Case(
        name=name,
        family="loss",
        inputs=_ce_inputs(shape, n_classes, ignore_index if draw_ignored else None, soft),
        torch_fn=functools.partial(_ce_torch, class_weights=w, **opts),
        torch_ref=functools.partial(_ce_torch_ref, class_weights=w, **opts),
        jax_fn=functools.partial(_ce_jax, class_weights=w, **opts),
        jax_ref=functools.partial(_ce_jax_ref, class_weights=w, n_classes=n_classes, soft=soft, **opts),
        torch_module=functools.partial(_ce_torch_module, class_weights=w, **opts),
        jax_module=functools.partial(_ce_jax_module, class_weights=w, **opts),
        description=f"logits {shape}, {reduction}, weight={w is not None}, "
        f"label_smoothing={label_smoothing}, " + ("class probabilities" if soft else f"ignore_index={ignore_index}"),
    )


@contextlib.contextmanager
def _sizes_differ_quietly():
    """torch's mse_loss (and ours) warn when the target's size differs from the input's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using a target size", UserWarning)
        yield


def _mse_torch(input, target, *, reduction):
    from torch_layers.loss import mse_loss

    with _sizes_differ_quietly():
        return mse_loss(input, target, reduction=reduction)


def _mse_torch_ref(input, target, *, reduction):
    import torch.nn.functional as F

    with _sizes_differ_quietly():
        return F.mse_loss(input, target, reduction=reduction)


def _mse_jax(x, target, *, reduction):
    from jax_layers.loss import mse_loss

    return mse_loss(x, target, reduction=reduction)


def _mse_jax_ref(x, target, *, reduction):
    import jax.numpy as jnp

    return _jax_reduced(jnp.square(x - target), reduction)


def _mse_torch_module(dtype, device, *, reduction):
    from torch_layers.loss import MSELoss

    return MSELoss(reduction=reduction)


def _mse_jax_module(dtype, *, reduction):
    from jax_layers.loss import MSELoss

    return MSELoss(reduction=reduction)


def _mse_case(name, shape, reduction, target_shape=None):
    """With `target_shape`, a target that broadcasts against the input, each summing its
    gradient back over the dims broadcasting added or stretched; no modules then, since torch
    warns about the differing sizes (the case functions silence it)."""
    broadcast = target_shape is not None
    target_shape = shape if target_shape is None else target_shape
    return Case(
        name=name,
        family="loss",
        inputs=(Tensor("input", shape), Tensor("target", target_shape)),
        torch_fn=functools.partial(_mse_torch, reduction=reduction),
        torch_ref=functools.partial(_mse_torch_ref, reduction=reduction),
        jax_fn=functools.partial(_mse_jax, reduction=reduction),
        jax_ref=functools.partial(_mse_jax_ref, reduction=reduction),
        torch_module=None if broadcast else functools.partial(_mse_torch_module, reduction=reduction),
        jax_module=None if broadcast else functools.partial(_mse_jax_module, reduction=reduction),
        description=f"input {shape}, target {target_shape}, {reduction}",
    )


def _bucket(make, name, rank, n0, n1, n2, n3, **options):
    """The case of `make` at one bucket's sizes (see `_register`)."""
    sizes = [n0, n1, n2, n3][:rank]
    if make is _ce_case:
        c = 1 if rank > 1 else 0
        sizes[c] = max(sizes[c], options.get("ignore_index", -1) + 1)
    return make(name, tuple(sizes), **options)


def _register(make, name, shape, ranks, **options):
    """The case at its declared shape, then buckets of every rank in `ranks` with sizes 1..5
    (1..4 and 1..2 for dims 2 and 3). Cross entropy has 1..5 classes (dim 1, dim 0 unbatched;
    one weight each), more than an in-range `ignore_index`, which stays a class."""
    ranges = dict(rank=ranks, n0=range(1, 6), n1=range(1, 6), n2=range(1, 5), n3=range(1, 3))
    register(make(name, shape, **options), functools.partial(_bucket, make, name, **options), ranges)


# Cross entropy takes logits (C,), (N, C) and (N, C, d1, ...): ranks 1..4; MSE any rank.
_register(_ce_case, "cross_entropy", (6, 4), range(1, 5))
# Weighted mean over a spatial dim: divides by the summed weights of the counted targets.
_register(_ce_case, "cross_entropy-weighted", (5, 4, 3), range(1, 5), weight=True, label_smoothing=0.2)
# An in-range ignore_index: that class's targets drop out, its logits still get gradient.
_register(_ce_case, "cross_entropy-sum", (7, 3), range(1, 5), reduction="sum", weight=True, label_smoothing=0.1,
          ignore_index=1)
_register(_ce_case, "cross_entropy-none", (2, 5, 1, 3), range(1, 5), reduction="none", weight=True,
          label_smoothing=0.3)
_register(_ce_case, "cross_entropy-unbatched", (5,), range(1, 5), label_smoothing=0.15, draw_ignored=False)
# Class probabilities (soft labels): the mean divides by the number of samples, not the
# weights, and the targets get `-(1 - eps) w log p`.
_register(_ce_case, "cross_entropy-soft", (4, 5, 3), range(1, 5), weight=True, label_smoothing=0.2, soft=True)
_register(_ce_case, "cross_entropy-soft-none", (3, 4), range(1, 5), reduction="none", soft=True)
_register(_mse_case, "mse", (3, 1, 4), range(5), reduction="mean")
_register(_mse_case, "mse-sum", (2, 5), range(5), reduction="sum")
_register(_mse_case, "mse-none", (1, 6), range(5), reduction="none")


def _mse_broadcast_bucket(name, reduction, rank, n0, n1, n2, lead):
    """The case of `_register_mse_broadcast` at one bucket's sizes."""
    full = [n0, n1, n2][:rank]
    target = full[lead:-1] + [1] if rank == 3 else full[lead:]
    return _mse_case(name, (n0, 1, *full[2:]), reduction, tuple(target))


def _register_mse_broadcast(name, shape, target_shape, reduction):
    """The case at its declared shapes, then buckets of broadcast shape `(n0, n1[, n2])`: the
    input stretched along dim 1, the target without `lead` leading dims and, in rank 3,
    stretched along the last."""
    ranges = dict(rank=(2, 3), n0=range(1, 5), n1=range(1, 5), n2=range(1, 5), lead=(0, 1))
    build = functools.partial(_mse_broadcast_bucket, name, reduction)
    register(_mse_case(name, shape, reduction, target_shape), build, ranges)


# Broadcast (3, 2, 4): the input stretched along dim 1, the target given a leading dim and
# stretched along the last; the mean divides by the broadcast size.
_register_mse_broadcast("mse-broadcast", (3, 1, 4), (2, 1), "mean")
