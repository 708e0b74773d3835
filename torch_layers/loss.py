"""Losses: cross entropy over class indices and mean squared error, with hand-written backward.

Half-precision inputs are computed in float32 and the result rounded back once, as the fused
kernels do: a log-softmax or a sum of squares in bfloat16 loses most of its digits.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _class_dim(input: torch.Tensor) -> int:
    return 0 if input.dim() == 1 else 1


def _weight_view(input, weight, dtype):
    """The class weights shaped to broadcast along the class dim (ones when None)."""
    view = [1] * input.dim()
    view[_class_dim(input)] = input.shape[_class_dim(input)]
    return torch.ones(view, dtype=dtype, device=input.device) if weight is None else weight.to(dtype).view(view)


def _soft_targets(input, target, weight, label_smoothing, ignore_index, dtype):
    """`q` with `loss = -sum_c q_c log p_c` per sample, and each sample's share of a mean.

    Class indices `y`: `q = m w ((1 - eps) onehot(y) + eps / C)`, with `m` zero where
    `y == ignore_index`, and the share `w[y] m` (torch's mean divides by the sum of `w[y] m`,
    for the smoothing term too). Class probabilities `t`: `q = w ((1 - eps) t + eps / C)` and a
    share of 1 per sample (the mean divides by the number of samples, whatever the weights).
    """
    dim, n_classes = _class_dim(input), input.shape[_class_dim(input)]
    w = _weight_view(input, weight, dtype)
    if target.is_floating_point():
        q = w * ((1 - label_smoothing) * target.to(dtype) + label_smoothing / n_classes)
        return q, torch.ones_like(q.select(dim, 0))
    y = target.unsqueeze(dim)
    onehot = (y == torch.arange(n_classes, device=input.device).view(w.shape)).to(dtype)
    kept = (y != ignore_index).to(dtype)
    q = kept * w * ((1 - label_smoothing) * onehot + label_smoothing / n_classes)
    share = (kept * w * onehot).sum(dim)
    return q, share


class CrossEntropyFunction(torch.autograd.Function):
    """Cross entropy of logits `input (N, C, ...)` or `(C,)` against class indices or probabilities.

    With `p = softmax(input)` and `q` the (weighted, smoothed, masked) target, the loss per
    sample is `-sum_c q_c log p_c`, its gradient `p sum_c q_c - q`, and for probabilities `t`
    (`q = w ((1 - eps) t + eps / C)`) the target's gradient `-(1 - eps) w log p`. `weight` is a
    constant: it gets no gradient.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, target, weight, reduction, label_smoothing, ignore_index):
        dtype = _compute_dtype(input.dtype)
        log_p = torch.log_softmax(input.to(dtype), _class_dim(input))
        q, share = _soft_targets(input, target, weight, label_smoothing, ignore_index, dtype)
        loss = -(q * log_p).sum(_class_dim(input))
        if reduction == "mean":
            loss = loss.sum() / share.sum()
        elif reduction == "sum":
            loss = loss.sum()
        return loss.to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction, label_smoothing, ignore_index = inputs
        ctx.save_for_backward(input, target, weight)
        ctx.options = (reduction, label_smoothing, ignore_index)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        reduction, label_smoothing, ignore_index = ctx.options
        dtype, dim = _compute_dtype(input.dtype), _class_dim(input)
        q, share = _soft_targets(input, target, weight, label_smoothing, ignore_index, dtype)
        g = grad_output.to(dtype)
        if reduction == "mean":
            g = g / share.sum()
        elif reduction == "none":
            g = g.unsqueeze(dim)
        grad_input = grad_target = None
        # Both are recomputed from `input`, not saved from forward, so that double backward sees
        # them. Neither runs when the class `weight` alone requires grad (tests/test_layers_loss.py).
        if ctx.needs_input_grad[0]:
            p = torch.softmax(input.to(dtype), dim)
            grad_input = (g * (p * q.sum(dim, keepdim=True) - q)).to(input.dtype)
        if ctx.needs_input_grad[1]:
            log_p = torch.log_softmax(input.to(dtype), dim)
            dq = (1 - label_smoothing) * _weight_view(input, weight, dtype)
            grad_target = (-g * dq * log_p).to(target.dtype)
        return grad_input, grad_target, None, None, None, None


def _check_reduction(reduction, size_average, reduce) -> None:
    if size_average is not None or reduce is not None:
        raise ValueError(
            f"`size_average` (={size_average}) and `reduce` (={reduce}) are deprecated and not supported; "
            "pass `reduction` instead"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` (={reduction!r}) must be one of {', '.join(map(repr, REDUCTIONS))}")


def _check_cross_entropy(input, target, weight, label_smoothing, ignore_index) -> None:
    if input.dim() == 0:
        raise ValueError(f"`input` (shape {tuple(input.shape)}) must have a class dimension")
    if target.is_floating_point() and ignore_index >= 0:
        raise ValueError(
            f"`ignore_index` (={ignore_index}) is not supported for class probabilities "
            f"(`target` of dtype {target.dtype}), as in torch; zero those targets' probabilities instead"
        )
    if target.is_floating_point():
        want = tuple(input.shape)
    else:
        want = () if input.dim() == 1 else (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != tuple(want):
        raise ValueError(
            f"`target` (shape {tuple(target.shape)}) must have shape {tuple(want)} for `input` {tuple(input.shape)}"
        )
    n_classes = input.shape[_class_dim(input)]
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(f"`weight` (shape {tuple(weight.shape)}) must have shape ({n_classes},)")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"`label_smoothing` (={label_smoothing}) must be in [0, 1]")


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.cross_entropy`.

    Args:
        input: logits `(N, C)`, `(N, C, d1, ...)` or unbatched `(C,)`.
        target: integer class indices `(N,)`, `(N, d1, ...)` or `()`, entries equal to
            `ignore_index` adding nothing and not counting in the mean; or class probabilities
            (soft labels), floating point of the shape of `input`, which get a gradient.
        weight: `(C,)` class weights or None; treated as a constant (no gradient).
        reduction: "mean" (class indices: divided by the summed weights of the counted targets;
            probabilities: by the number of samples), "sum" or "none".
        label_smoothing: `eps` in `[0, 1]`; the target becomes `(1 - eps) onehot + eps / C`.

    Returns:
        `()` for "mean"/"sum", the shape of `target` for "none".
    """
    _check_reduction(reduction, size_average, reduce)
    _check_cross_entropy(input, target, weight, label_smoothing, ignore_index)
    return CrossEntropyFunction.apply(input, target, weight, reduction, float(label_smoothing), int(ignore_index))


class MSEFunction(torch.autograd.Function):
    """`(input - target)^2`, reduced; both inputs get gradients (summed back over broadcasting)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, target, reduction):
        dtype = _compute_dtype(torch.promote_types(input.dtype, target.dtype))
        loss = (input.to(dtype) - target.to(dtype)).square()
        if reduction == "mean":
            loss = loss.mean()
        elif reduction == "sum":
            loss = loss.sum()
        return loss.to(torch.promote_types(input.dtype, target.dtype))

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, reduction = inputs
        ctx.save_for_backward(input, target)
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad_output):
        input, target = ctx.saved_tensors
        dtype = _compute_dtype(torch.promote_types(input.dtype, target.dtype))
        diff = input.to(dtype) - target.to(dtype)
        g = grad_output.to(dtype)
        if ctx.reduction == "mean":
            g = g / diff.numel()
        grad = 2 * g * diff
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            grad_input = grad.sum_to_size(input.shape).to(input.dtype)
        if ctx.needs_input_grad[1]:
            grad_target = (-grad).sum_to_size(target.shape).to(target.dtype)
        return grad_input, grad_target, None


def mse_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.mse_loss`.

    Args:
        input: any shape.
        target: broadcastable with `input` (with torch's warning when the sizes differ).
        reduction: "mean", "sum" or "none".
        weight: must be None (element weights are not supported).

    Returns:
        `()` for "mean"/"sum", the broadcast shape for "none".
    """
    _check_reduction(reduction, size_average, reduce)
    if weight is not None:
        raise ValueError(
            f"`weight` (shape {tuple(weight.shape)}) is not supported (element weights); use torch.nn.functional.mse_loss"
        )
    if target.size() != input.size():
        warnings.warn(
            f"Using a target size ({target.size()}) that is different to the input size ({input.size()}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=2,
        )
    torch.broadcast_shapes(input.shape, target.shape)
    return MSEFunction.apply(input, target, reduction)


class CrossEntropyLoss(nn.Module):
    """Drop-in for `torch.nn.CrossEntropyLoss`; `weight` is a buffer, as there."""

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        _check_reduction(reduction, size_average, reduce)
        self.register_buffer("weight", weight)
        self.weight: torch.Tensor | None
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(
            input, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.label_smoothing,
        )


class MSELoss(nn.Module):
    """Drop-in for `torch.nn.MSELoss`."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        _check_reduction(reduction, size_average, reduce)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mse_loss(input, target, reduction=self.reduction)
