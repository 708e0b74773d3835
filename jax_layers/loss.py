"""Losses: cross entropy over class indices and mean squared error, with hand-written VJPs.

Classes sit on `axis` (channels-last by default: logits `(N, d1, C)`). Half-precision inputs
are computed in float32 and the result rounded back once. Options are static: they travel as
`nondiff_argnums`, never as residuals.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

REDUCTIONS = ("mean", "sum", "none")


def _compute_dtype(dtype):
    return jnp.promote_types(dtype, jnp.float32)


def _weight_view(logits, weight, axis, dtype):
    """The class weights shaped to broadcast along `axis` (ones when None)."""
    view = [1] * logits.ndim
    view[axis] = logits.shape[axis]
    return jnp.ones(view, dtype) if weight is None else weight.astype(dtype).reshape(view)


def _is_probabilities(labels) -> bool:
    return jnp.issubdtype(labels.dtype, jnp.floating)


def _soft_targets(logits, labels, weight, label_smoothing, ignore_index, axis, dtype):
    """`q` with `loss = -sum_c q_c log p_c` per sample, and each sample's share of a mean.

    Class indices `y`: `q = m w ((1 - eps) onehot(y) + eps / C)`, with `m` zero where
    `y == ignore_index`, and the share `w[y] m` (the mean divides by the sum of `w[y] m`, for the
    smoothing term too, as torch does). Class probabilities `t`: `q = w ((1 - eps) t + eps / C)`
    and a share of 1 per sample.
    """
    n_classes = logits.shape[axis]
    w = _weight_view(logits, weight, axis, dtype)
    if _is_probabilities(labels):
        q = w * ((1 - label_smoothing) * labels.astype(dtype) + label_smoothing / n_classes)
        return q, jnp.ones(labels.shape[:axis] + labels.shape[axis + 1 :], dtype)
    y = jnp.expand_dims(labels, axis)
    onehot = (y == jnp.arange(n_classes).reshape(w.shape)).astype(dtype)
    kept = (y != ignore_index).astype(dtype)
    q = kept * w * ((1 - label_smoothing) * onehot + label_smoothing / n_classes)
    share = jnp.sum(kept * w * onehot, axis=axis)
    return q, share


def _cross_entropy(reduction, label_smoothing, ignore_index, axis, logits, labels, weight):
    dtype = _compute_dtype(logits.dtype)
    log_p = jax.nn.log_softmax(logits.astype(dtype), axis=axis)
    q, share = _soft_targets(logits, labels, weight, label_smoothing, ignore_index, axis, dtype)
    loss = -jnp.sum(q * log_p, axis=axis)
    if reduction == "mean":
        loss = jnp.sum(loss) / jnp.sum(share)
    elif reduction == "sum":
        loss = jnp.sum(loss)
    return loss.astype(logits.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _cross_entropy_vjp(reduction, label_smoothing, ignore_index, axis, logits, labels, weight):
    return _cross_entropy(reduction, label_smoothing, ignore_index, axis, logits, labels, weight)


def _cross_entropy_fwd(reduction, label_smoothing, ignore_index, axis, logits, labels, weight):
    out = _cross_entropy(reduction, label_smoothing, ignore_index, axis, logits, labels, weight)
    return out, (logits, labels, weight)


def _cross_entropy_bwd(reduction, label_smoothing, ignore_index, axis, res, g):
    logits, labels, weight = res
    dtype = _compute_dtype(logits.dtype)
    # The gradient is `p sum_c q_c - q`, and for probabilities `t` the target's
    # `-(1 - eps) w log p`; p is recomputed from the logits so that both are differentiable in
    # them (grad of grad).
    p = jax.nn.softmax(logits.astype(dtype), axis=axis)
    q, share = _soft_targets(logits, labels, weight, label_smoothing, ignore_index, axis, dtype)
    g = g.astype(dtype)
    if reduction == "mean":
        g = g / jnp.sum(share)
    elif reduction == "none":
        g = jnp.expand_dims(g, axis)
    grad = g * (p * jnp.sum(q, axis=axis, keepdims=True) - q)
    grad_labels = None
    if _is_probabilities(labels):
        log_p = jax.nn.log_softmax(logits.astype(dtype), axis=axis)
        dq = (1 - label_smoothing) * _weight_view(logits, weight, axis, dtype)
        grad_labels = (-g * dq * log_p).astype(labels.dtype)
    return grad.astype(logits.dtype), grad_labels, None


_cross_entropy_vjp.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def _check_reduction(reduction) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` (={reduction!r}) must be one of {', '.join(map(repr, REDUCTIONS))}")


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    weight: jax.Array | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    axis: int = -1,
) -> jax.Array:
    """Cross entropy of `logits` against class indices or probabilities, as torch computes it.

    Args:
        logits: `(..., C)` with classes on `axis` (channels-last `(N, d1, C)`), or `(C,)`.
        labels: integers, the shape of `logits` without `axis`, entries equal to
            `ignore_index` adding nothing and not counting in the mean; or class probabilities
            (soft labels), floating point of the shape of `logits`, which get a cotangent.
        weight: `(C,)` class weights or None; treated as a constant (zero cotangent).
        reduction: "mean" (class indices: divided by the summed weights of the counted labels;
            probabilities: by the number of samples), "sum" or "none".
        label_smoothing: `eps` in `[0, 1]`; the target becomes `(1 - eps) onehot + eps / C`.
        axis: the class axis of `logits`.

    Returns:
        `()` for "mean"/"sum", the shape of `labels` for "none".
    """
    _check_reduction(reduction)
    if logits.ndim == 0:
        raise ValueError(f"`logits` (shape {logits.shape}) must have a class axis")
    if not -logits.ndim <= axis < logits.ndim:
        raise ValueError(f"`axis` (={axis}) is out of range for `logits` of shape {logits.shape}")
    axis = axis % logits.ndim
    if _is_probabilities(labels):
        want = logits.shape
        if ignore_index >= 0:
            raise ValueError(
                f"`ignore_index` (={ignore_index}) is not supported for class probabilities "
                f"(`labels` of dtype {labels.dtype}), as in torch; zero those labels' probabilities instead"
            )
    elif jnp.issubdtype(labels.dtype, jnp.integer):
        want = logits.shape[:axis] + logits.shape[axis + 1 :]
    else:
        raise ValueError(f"`labels` (dtype {labels.dtype}) must be integer class indices or float class probabilities")
    if labels.shape != want:
        raise ValueError(f"`labels` (shape {labels.shape}) must have shape {want} for `logits` {logits.shape}")
    if weight is not None and weight.shape != (logits.shape[axis],):
        raise ValueError(f"`weight` (shape {weight.shape}) must have shape ({logits.shape[axis]},)")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"`label_smoothing` (={label_smoothing}) must be in [0, 1]")
    return _cross_entropy_vjp(reduction, float(label_smoothing), int(ignore_index), axis, logits, labels, weight)


def _mse(reduction, x, target):
    dtype = _compute_dtype(jnp.result_type(x, target))
    loss = jnp.square(x.astype(dtype) - target.astype(dtype))
    if reduction == "mean":
        loss = jnp.mean(loss)
    elif reduction == "sum":
        loss = jnp.sum(loss)
    return loss.astype(jnp.result_type(x, target))


def _sum_to(a, shape):
    """`a` summed over the axes that broadcasting added to an array of `shape`."""
    lead = a.ndim - len(shape)
    a = jnp.sum(a, axis=tuple(range(lead))) if lead else a
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and a.shape[i] != 1)
    return jnp.sum(a, axis=stretched, keepdims=True) if stretched else a


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _mse_vjp(reduction, x, target):
    return _mse(reduction, x, target)


def _mse_fwd(reduction, x, target):
    return _mse(reduction, x, target), (x, target)


def _mse_bwd(reduction, res, g):
    x, target = res
    dtype = _compute_dtype(jnp.result_type(x, target))
    diff = x.astype(dtype) - target.astype(dtype)
    g = g.astype(dtype)
    if reduction == "mean":
        g = g / diff.size
    grad = 2 * g * diff
    return _sum_to(grad, x.shape).astype(x.dtype), _sum_to(-grad, target.shape).astype(target.dtype)


_mse_vjp.defvjp(_mse_fwd, _mse_bwd)


def mse_loss(x: jax.Array, target: jax.Array, *, reduction: str = "mean") -> jax.Array:
    """`(x - target)^2`, reduced; both arguments get gradients.

    Args:
        x: any shape.
        target: broadcastable with `x`.
        reduction: "mean", "sum" or "none".

    Returns:
        `()` for "mean"/"sum", the broadcast shape for "none".
    """
    _check_reduction(reduction)
    try:
        jnp.broadcast_shapes(x.shape, target.shape)
    except ValueError:
        raise ValueError(f"`target` (shape {target.shape}) does not broadcast with `x` (shape {x.shape})") from None
    return _mse_vjp(reduction, x, target)


class CrossEntropyLoss(nnx.Module):
    """`cross_entropy` as a module; `weight` is a constant, not a parameter.

    Example:
        >>> loss = CrossEntropyLoss(label_smoothing=0.1)
        >>> loss(jnp.zeros((2, 3)), jnp.array([0, 2])).shape
        ()
    """

    def __init__(
        self,
        *,
        weight: jax.Array | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        axis: int = -1,
    ):
        _check_reduction(reduction)
        self.weight = None if weight is None else nnx.data(jnp.asarray(weight))
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.axis = axis

    def __call__(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        return cross_entropy(
            logits, labels, weight=self.weight, reduction=self.reduction,
            label_smoothing=self.label_smoothing, ignore_index=self.ignore_index, axis=self.axis,
        )


class MSELoss(nnx.Module):
    """`mse_loss` as a module."""

    def __init__(self, *, reduction: str = "mean"):
        _check_reduction(reduction)
        self.reduction = reduction

    def __call__(self, x: jax.Array, target: jax.Array) -> jax.Array:
        return mse_loss(x, target, reduction=self.reduction)
