"""Normalization layers (LayerNorm, RMSNorm, GroupNorm, BatchNorm) with hand-written backward passes.

Every backward recomputes the statistics from the saved input with differentiable ops, so
that double backward sees how the mean and the variance depend on the input. Half-precision
inputs are normalized in float32 and rounded once, as the built-ins do on CPU.

With `xhat = (x - mean) * rstd` over a set of reduction dims and `gxhat = dL/dxhat`,
`dL/dx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat))`; RMSNorm drops the
`mean(gxhat)` term because it does not subtract the mean.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _stats(x, dims, eps, center):
    """`(mean, rstd)` over `dims`, kept as size-1 dims; `mean` is None without centering."""
    if center:
        # Two passes rather than var_mean, which warns on an empty batch.
        mean = x.mean(dim=dims, keepdim=True)
        var = (x - mean).square().mean(dim=dims, keepdim=True)
    else:
        mean, var = None, x.square().mean(dim=dims, keepdim=True)
    return mean, torch.rsqrt(var + eps)


def _normalized(x, dims, eps, center):
    """`(xhat, rstd)`: `x` normalized over `dims`."""
    mean, rstd = _stats(x, dims, eps, center)
    return (x - mean if center else x) * rstd, rstd


def _xhat_backward(gxhat, xhat, rstd, dims, center):
    """`dL/dx` from `dL/dxhat`, through the statistics as well as the direct path."""
    inner = gxhat - xhat * (gxhat * xhat).mean(dim=dims, keepdim=True)
    if center:
        inner = inner - gxhat.mean(dim=dims, keepdim=True)
    return rstd * inner


def _affine(xhat, weight, bias):
    y = xhat if weight is None else xhat * weight.to(xhat.dtype)
    return y if bias is None else y + bias.to(xhat.dtype)


def _trailing(ndim: int, n: int) -> list[int]:
    return list(range(ndim - n, ndim))


def _channel_view(t, ndim):
    """A per-channel `(C,)` tensor viewed as `(1, C, 1, ...)` against an `(N, C, *)` input."""
    return t.reshape(1, -1, *([1] * (ndim - 2)))


def _but_channel(ndim: int) -> list[int]:
    return [0, *range(2, ndim)]


class LayerNormFunction(torch.autograd.Function):
    """Normalizes `input (..., *normalized_shape)` over its trailing `normalized_shape` dims."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, normalized_shape, weight, bias, eps):
        dims = _trailing(input.dim(), len(normalized_shape))
        xhat, _ = _normalized(input.to(_compute_dtype(input.dtype)), dims, eps, True)
        return _affine(xhat, weight, bias).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, normalized_shape, weight, bias, eps = inputs
        ctx.save_for_backward(input, weight)
        ctx.normalized_shape, ctx.eps = tuple(normalized_shape), eps
        ctx.bias_dtype = None if bias is None else bias.dtype

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        shape = ctx.normalized_shape
        dims = _trailing(input.dim(), len(shape))
        xhat, rstd = _normalized(input.to(_compute_dtype(input.dtype)), dims, ctx.eps, True)
        g = grad_output.to(xhat.dtype)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            gxhat = g if weight is None else g * weight.to(g.dtype)
            grad_input = _xhat_backward(gxhat, xhat, rstd, dims, True).to(input.dtype)
        # Leading dims (none, one or many) flatten into one row axis; an empty batch sums to 0.
        if weight is not None and ctx.needs_input_grad[2]:
            grad_weight = (g * xhat).reshape(-1, *shape).sum(0).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[3]:
            grad_bias = g.reshape(-1, *shape).sum(0).to(ctx.bias_dtype)
        return grad_input, None, grad_weight, grad_bias, None


class RMSNormFunction(torch.autograd.Function):
    """`input * rsqrt(mean(input^2) + eps) * weight` over the trailing `normalized_shape` dims."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, normalized_shape, weight, eps):
        dims = _trailing(input.dim(), len(normalized_shape))
        xhat, _ = _normalized(input.to(_compute_dtype(input.dtype)), dims, eps, False)
        return _affine(xhat, weight, None).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, normalized_shape, weight, eps = inputs
        ctx.save_for_backward(input, weight)
        ctx.normalized_shape, ctx.eps = tuple(normalized_shape), eps

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        shape = ctx.normalized_shape
        dims = _trailing(input.dim(), len(shape))
        xhat, rstd = _normalized(input.to(_compute_dtype(input.dtype)), dims, ctx.eps, False)
        g = grad_output.to(xhat.dtype)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            gxhat = g if weight is None else g * weight.to(g.dtype)
            grad_input = _xhat_backward(gxhat, xhat, rstd, dims, False).to(input.dtype)
        if weight is not None and ctx.needs_input_grad[2]:
            grad_weight = (g * xhat).reshape(-1, *shape).sum(0).to(weight.dtype)
        return grad_input, None, grad_weight, None


def _grouped(x, num_groups):
    """`(N, C, *)` -> `(N, G, C // G * prod(*))`; shapes spelled out so that N = 0 works."""
    return x.reshape(x.shape[0], num_groups, x.shape[1] // num_groups * math.prod(x.shape[2:]))


class GroupNormFunction(torch.autograd.Function):
    """Normalizes `input (N, C, *)` over each group of `C // num_groups` channels and `*`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, num_groups, weight, bias, eps):
        xg = _grouped(input.to(_compute_dtype(input.dtype)), num_groups)
        xhat = _normalized(xg, [-1], eps, True)[0].reshape(input.shape)
        w = None if weight is None else _channel_view(weight, input.dim())
        b = None if bias is None else _channel_view(bias, input.dim())
        return _affine(xhat, w, b).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, num_groups, weight, bias, eps = inputs
        ctx.save_for_backward(input, weight)
        ctx.num_groups, ctx.eps = num_groups, eps
        ctx.bias_dtype = None if bias is None else bias.dtype

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        xhat_g, rstd = _normalized(_grouped(input.to(_compute_dtype(input.dtype)), ctx.num_groups), [-1], ctx.eps, True)
        xhat = xhat_g.reshape(input.shape)
        g = grad_output.to(xhat.dtype)
        others = _but_channel(input.dim())
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            gxhat = g if weight is None else g * _channel_view(weight, input.dim()).to(g.dtype)
            gx = _xhat_backward(_grouped(gxhat, ctx.num_groups), xhat_g, rstd, [-1], True)
            grad_input = gx.reshape(input.shape).to(input.dtype)
        if weight is not None and ctx.needs_input_grad[2]:
            grad_weight = (g * xhat).sum(others).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[3]:
            grad_bias = g.sum(others).to(ctx.bias_dtype)
        return grad_input, None, grad_weight, grad_bias, None


class BatchNormFunction(torch.autograd.Function):
    """Training mode: normalizes `input (N, C, *)` per channel with the batch's statistics."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, eps):
        dims = _but_channel(input.dim())
        xhat, _ = _normalized(input.to(_compute_dtype(input.dtype)), dims, eps, True)
        w = None if weight is None else _channel_view(weight, input.dim())
        b = None if bias is None else _channel_view(bias, input.dim())
        return _affine(xhat, w, b).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, eps = inputs
        ctx.save_for_backward(input, weight)
        ctx.eps = eps
        ctx.bias_dtype = None if bias is None else bias.dtype

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        dims = _but_channel(input.dim())
        xhat, rstd = _normalized(input.to(_compute_dtype(input.dtype)), dims, ctx.eps, True)
        g = grad_output.to(xhat.dtype)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            gxhat = g if weight is None else g * _channel_view(weight, input.dim()).to(g.dtype)
            grad_input = _xhat_backward(gxhat, xhat, rstd, dims, True).to(input.dtype)
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = (g * xhat).sum(dims).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            grad_bias = g.sum(dims).to(ctx.bias_dtype)
        return grad_input, grad_weight, grad_bias, None


class BatchNormEvalFunction(torch.autograd.Function):
    """Eval mode: normalizes `input (N, C, *)` with given per-channel `running_mean`/`running_var`.

    The built-in refuses gradients for the running statistics; this one gives the true ones
    when asked (`dL/dmean = -sum(gxhat) rstd`, `dL/dvar = -sum(gxhat xhat) rstd^2 / 2`).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, running_mean, running_var, weight, bias, eps):
        ct, n = _compute_dtype(input.dtype), input.dim()
        mean, var = _channel_view(running_mean, n).to(ct), _channel_view(running_var, n).to(ct)
        xhat = (input.to(ct) - mean) * torch.rsqrt(var + eps)
        w = None if weight is None else _channel_view(weight, n)
        b = None if bias is None else _channel_view(bias, n)
        return _affine(xhat, w, b).to(input.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, running_mean, running_var, weight, bias, eps = inputs
        ctx.save_for_backward(input, running_mean, running_var, weight)
        ctx.eps = eps
        ctx.bias_dtype = None if bias is None else bias.dtype

    @staticmethod
    def backward(ctx, grad_output):
        input, running_mean, running_var, weight = ctx.saved_tensors
        ct, n = _compute_dtype(input.dtype), input.dim()
        dims = _but_channel(n)
        rstd = torch.rsqrt(_channel_view(running_var, n).to(ct) + ctx.eps)
        xhat = (input.to(ct) - _channel_view(running_mean, n).to(ct)) * rstd
        g = grad_output.to(ct)
        gxhat = g if weight is None else g * _channel_view(weight, n).to(ct)
        grads = [None] * 6
        if ctx.needs_input_grad[0]:
            grads[0] = (gxhat * rstd).to(input.dtype)
        if ctx.needs_input_grad[1]:
            grads[1] = -(gxhat * rstd).sum(dims).to(running_mean.dtype)
        if ctx.needs_input_grad[2]:
            grads[2] = (-0.5 * (gxhat * xhat * rstd.square()).sum(dims)).to(running_var.dtype)
        if weight is not None and ctx.needs_input_grad[3]:
            grads[3] = (g * xhat).sum(dims).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[4]:
            grads[4] = g.sum(dims).to(ctx.bias_dtype)
        return tuple(grads)


def _as_shape(normalized_shape) -> tuple[int, ...]:
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


def _check_normalized(input, normalized_shape, params: dict):
    shape = _as_shape(normalized_shape)
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"`normalized_shape` (={normalized_shape}) must be a non-empty shape of positive sizes")
    if tuple(input.shape[input.dim() - len(shape):]) != shape or input.dim() < len(shape):
        raise ValueError(f"`normalized_shape` (={shape}) must match the trailing dims of `input` (={tuple(input.shape)})")
    for name, p in params.items():
        if p is not None and tuple(p.shape) != shape:
            raise ValueError(f"`{name}` shape (={tuple(p.shape)}) must equal `normalized_shape` (={shape})")
    return shape


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.layer_norm`.

    Args:
        input: `(..., *normalized_shape)`, including unbatched `normalized_shape` and empty batches.
        normalized_shape: an int or a shape: the trailing dims to normalize over.
        weight, bias: `normalized_shape` or None.
        eps: added to the (biased) variance.

    Returns:
        `input`'s shape and dtype.
    """
    shape = _check_normalized(input, normalized_shape, {"weight": weight, "bias": bias})
    return LayerNormFunction.apply(input, shape, weight, bias, eps)


def rms_norm(input, normalized_shape, weight=None, eps: float | None = None) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.rms_norm`.

    Args:
        input: `(..., *normalized_shape)`.
        normalized_shape: an int or a shape: the trailing dims to normalize over.
        weight: `normalized_shape` or None.
        eps: added to the mean square; None means the machine epsilon of the compute dtype
            (float32 for half inputs), as in the built-in.

    Returns:
        `input`'s shape and dtype.
    """
    shape = _check_normalized(input, normalized_shape, {"weight": weight})
    if eps is None:
        eps = torch.finfo(_compute_dtype(input.dtype)).eps
    return RMSNormFunction.apply(input, shape, weight, eps)


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.group_norm`.

    Args:
        input: `(N, C, *)` with `C` divisible by `num_groups`; `N` may be 0.
        weight, bias: `(C,)` or None.

    Returns:
        `input`'s shape and dtype.
    """
    if input.dim() < 2:
        raise ValueError(f"`input` (shape {tuple(input.shape)}) must have at least 2 dims (N, C, *)")
    if num_groups <= 0 or input.shape[1] % num_groups:
        raise ValueError(f"`num_groups` (={num_groups}) must be positive and divide the channels (={input.shape[1]})")
    if input.shape[0] * input.shape[1] // num_groups * math.prod(input.shape[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per group when training, got `input` of shape {tuple(input.shape)}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (input.shape[1],):
            raise ValueError(f"`{name}` shape (={tuple(p.shape)}) must be (C,) = ({input.shape[1]},)")
    return GroupNormFunction.apply(input, num_groups, weight, bias, eps)


def _update_running(input, running_mean, running_var, momentum):
    """The built-in's update: `new = (1 - momentum) old + momentum stat`, the unbiased variance."""
    if input.numel() == 0:  # the built-in leaves the statistics alone on an empty batch
        return
    with torch.no_grad():
        var, mean = torch.var_mean(input.detach().to(_compute_dtype(input.dtype)), dim=_but_channel(input.dim()), correction=1)
        if running_mean is not None:
            running_mean.copy_(momentum * mean + (1 - momentum) * running_mean)
        if running_var is not None:
            running_var.copy_(momentum * var + (1 - momentum) * running_var)


def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5
) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.batch_norm`.

    In training the batch statistics normalize, and `running_mean`/`running_var` (when
    given) are updated in place, outside autograd; in eval the running statistics normalize.

    Args:
        input: `(N, C, *)`, or empty of any rank (as `(0, 0)`: an empty result).
        running_mean, running_var: `(C,)` or None (None only in training).
        weight, bias: `(C,)` or None.

    Returns:
        `input`'s shape and dtype.
    """
    if input.dim() < 2 and input.numel() == 0:
        # The built-in takes an empty input of any rank (one of its OpInfo samples is 1-d) with
        # empty statistics: as a batch of no channels, an empty result and an empty gradient.
        out = batch_norm(input.reshape(0, 0), running_mean, running_var, weight, bias, training, momentum, eps)
        return out.reshape(input.shape)
    if input.dim() < 2:
        raise ValueError(
            f"`input` (shape {tuple(input.shape)}) must have at least 2 dims (N, C, *), or be empty, as the built-in asks"
        )
    if training and input.numel() and input.numel() // input.shape[1] == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got `input` of shape {tuple(input.shape)}")
    if eps < 0 or (training and eps == 0):
        raise ValueError(f"`eps` (={eps}) must be positive in training and non-negative in eval")
    c = input.shape[1]
    for name, p in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (c,):
            raise ValueError(f"`{name}` shape (={tuple(p.shape)}) must be (C,) = ({c},)")
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("`running_mean` and `running_var` must be given in eval mode (training=False)")
        return BatchNormEvalFunction.apply(input, running_mean, running_var, weight, bias, eps)
    out = BatchNormFunction.apply(input, weight, bias, eps)
    _update_running(input, running_mean, running_var, momentum)
    return out


class LayerNorm(nn.Module):
    """Drop-in for `torch.nn.LayerNorm`: `weight`/`bias` of `normalized_shape`, ones and zeros."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.empty(self.normalized_shape, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(self.normalized_shape, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.bias is not None}"
        )


class RMSNorm(nn.Module):
    """Drop-in for `torch.nn.RMSNorm`: `weight` of `normalized_shape`, ones."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.empty(self.normalized_shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # `x`, as the built-in names it: a caller may pass it by keyword.
        return rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(nn.Module):
    """Drop-in for `torch.nn.GroupNorm`: per-channel `weight`/`bias` `(C,)`, ones and zeros."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"`num_groups` (={num_groups}) must be positive and divide `num_channels` (={num_channels})")
        factory = {"device": device, "dtype": dtype}
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        if affine:
            self.weight = nn.Parameter(torch.empty(num_channels, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_channels, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, bias={self.bias is not None}"


class BatchNorm2d(nn.Module):
    """Drop-in for `torch.nn.BatchNorm2d` on `(N, C, H, W)`.

    Parameters `weight`/`bias` `(C,)`; buffers `running_mean`, `running_var` and
    `num_batches_tracked`, updated in training exactly as the built-in updates them
    (`momentum=None` is the cumulative average).
    """

    _version = 2  # the built-in's state_dict version: num_batches_tracked exists

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
        track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(num_features, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # State dicts from before num_batches_tracked existed load with the counter at 0.
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            state_dict[key] = torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        # Batch statistics in training, and in eval when there are no running statistics.
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return batch_norm(
            input, self.running_mean if track else None, self.running_var if track else None,
            self.weight, self.bias, use_batch, factor, self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )
