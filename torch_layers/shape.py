"""Shape layers: the gradient is the output gradient put back into the input's shape."""

from __future__ import annotations

import torch
from torch import nn


class ReshapeFunction(torch.autograd.Function):
    """`input.reshape(shape)`; backward reshapes the gradient to the input's shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, shape):
        return input.reshape(shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.input_shape = inputs[0].shape

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.reshape(ctx.input_shape), None


def _as_shape(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    if not all(isinstance(s, int) for s in shape) or sum(s == -1 for s in shape) > 1 or any(s < -1 for s in shape):
        raise ValueError(f"`shape` (={shape}) must be ints >= -1 with at most one -1")
    return shape


def reshape(input: torch.Tensor, shape) -> torch.Tensor:
    """Drop-in for `torch.reshape`; `shape` may hold one `-1`."""
    return ReshapeFunction.apply(input, _as_shape(shape))


class Reshape(nn.Module):
    """`Reshape(*shape)(x) == reshape(x, shape)`."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = _as_shape(shape)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return reshape(input, self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def _normalize_dim(dim: int, ndim: int, name: str) -> int:
    # A 0-dim tensor flattens as if it had one axis, as in torch.flatten.
    rank = max(ndim, 1)
    if not isinstance(dim, int) or not -rank <= dim < rank:
        raise ValueError(f"`{name}` (={dim}) must be an int in [{-rank}, {rank - 1}] for a {ndim}-dim input")
    return dim % rank


class FlattenFunction(torch.autograd.Function):
    """`input.flatten(start_dim, end_dim)`; backward reshapes the gradient to the input's shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, start_dim, end_dim):
        return torch.flatten(input, start_dim, end_dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.input_shape = inputs[0].shape

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.reshape(ctx.input_shape), None, None


def flatten(input: torch.Tensor, start_dim: int = 0, end_dim: int = -1) -> torch.Tensor:
    """Drop-in for `torch.flatten`: dims `start_dim..end_dim` (inclusive) merge into one.

    Args:
        input: `(d0, ..., dn)`; a 0-dim input becomes `(1,)`.
        start_dim, end_dim: the first and last dims merged; negative counts from the end.

    Returns:
        `(d0, ..., d[start] * ... * d[end], ..., dn)`.
    """
    start = _normalize_dim(start_dim, input.ndim, "start_dim")
    end = _normalize_dim(end_dim, input.ndim, "end_dim")
    if start > end:
        raise ValueError(f"`start_dim` (={start_dim}) must not come after `end_dim` (={end_dim})")
    return FlattenFunction.apply(input, start, end)


class Flatten(nn.Module):
    """Drop-in for `torch.nn.Flatten`: `(N, *dims)` -> `(N, prod(dims))` by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


def _as_dims(dims, ndim: int) -> tuple[int, ...]:
    dims = tuple(dims)
    ok = all(isinstance(d, int) for d in dims) and len(dims) == ndim and all(-ndim <= d < ndim for d in dims)
    if not ok or sorted(d % ndim for d in dims) != list(range(ndim)):
        raise ValueError(f"`dims` (={dims}) must hold each of the {ndim} dims of the input once")
    return tuple(d % ndim for d in dims)


class PermuteFunction(torch.autograd.Function):
    """`input.permute(dims)`; backward permutes the gradient by the inverse permutation."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input, dims):
        return torch.permute(input, dims)

    @staticmethod
    def setup_context(ctx, inputs, output):
        dims = inputs[1]
        ctx.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))

    @staticmethod
    def backward(ctx, grad_output):
        return torch.permute(grad_output, ctx.inverse), None


def permute(input: torch.Tensor, dims) -> torch.Tensor:
    """Drop-in for `torch.permute`: output dim `i` is input dim `dims[i]`.

    Args:
        input: `(d0, ..., dn)`.
        dims: a permutation of `range(input.ndim)`; negative entries count from the end.

    Returns:
        `(d[dims[0]], ..., d[dims[n]])`, a view as in torch.
    """
    return PermuteFunction.apply(input, _as_dims(dims, input.ndim))


class Permute(nn.Module):
    """`Permute(*dims)(x) == permute(x, dims)` (also `Permute(dims)`, as torchvision's)."""

    def __init__(self, *dims):
        super().__init__()
        self.dims = tuple(dims[0]) if len(dims) == 1 and not isinstance(dims[0], int) else tuple(dims)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return permute(input, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"
