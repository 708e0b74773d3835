"""Embedding lookup: `weight[input]`, with a hand-written scatter-add backward."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingFunction(torch.autograd.Function):
    """`weight[input]` for integer `input (...)` and `weight (num_embeddings, dim)` -> `(..., dim)`.

    The weight gradient scatter-adds each output row's gradient into the row it was read
    from, so repeated indices accumulate; the `padding_idx` row gets none.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, padding_idx, scale_grad_by_freq):
        rows = weight.index_select(0, input.reshape(-1))
        return rows.reshape(*input.shape, weight.shape[1])

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, padding_idx, scale_grad_by_freq = inputs
        ctx.save_for_backward(input)
        ctx.weight_shape = tuple(weight.shape)
        ctx.weight_dtype = weight.dtype
        ctx.options = (padding_idx, scale_grad_by_freq)

    @staticmethod
    def backward(ctx, grad_output):
        # No `needs_input_grad` test: `weight` is the one differentiable input (the indices are
        # integers), so backward runs only when it needs a gradient.
        (input,) = ctx.saved_tensors
        padding_idx, scale_grad_by_freq = ctx.options
        num, dim = ctx.weight_shape
        # Half-precision sums of many rows lose digits; accumulate in float32 at least.
        dtype = torch.promote_types(ctx.weight_dtype, torch.float32)
        index = input.reshape(-1)
        rows = grad_output.reshape(-1, dim).to(dtype)
        if scale_grad_by_freq:
            counts = torch.zeros(num, dtype=dtype, device=rows.device).index_add(
                0, index, torch.ones(index.shape, dtype=dtype, device=rows.device)
            )
            rows = rows / counts.index_select(0, index).unsqueeze(1)
        grad_weight = torch.zeros((num, dim), dtype=dtype, device=rows.device).index_add(0, index, rows)
        if padding_idx is not None:
            keep = torch.arange(num, device=rows.device) != padding_idx
            grad_weight = torch.where(keep.unsqueeze(1), grad_weight, 0)
        return None, grad_weight.to(ctx.weight_dtype), None, None


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    """`padding_idx` in `[0, num_embeddings)`; negative values count from the end, as in torch."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"`padding_idx` (={padding_idx}) must be within num_embeddings (={num_embeddings})")
    return padding_idx % num_embeddings


def _out_of_scope(max_norm, sparse, builtin: str) -> None:
    """Refuse `max_norm` (renormalises `weight` in place during the forward) and `sparse`
    (sparse gradients): out of scope for a dense hand-written backward."""
    if max_norm is not None:
        raise ValueError(f"`max_norm` (={max_norm}) is not supported (in-place renormalisation); use {builtin}")
    if sparse:
        raise ValueError(f"`sparse` (={sparse}) is not supported (gradients are dense); use {builtin}")


def embedding(
    input: torch.Tensor,
    weight: torch.Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> torch.Tensor:
    """Drop-in for `torch.nn.functional.embedding`.

    Args:
        input: integer indices of any shape `(...)`, including `()` and empty.
        weight: `(num_embeddings, embedding_dim)`.
        padding_idx: the row that gets no gradient (negative counts from the end).
        max_norm: must be None (in-place renormalisation of `weight` is not supported).
        scale_grad_by_freq: divide each row's gradient by how often its index occurs in `input`.
        sparse: must be False.

    Returns:
        `(..., embedding_dim)`.
    """
    _out_of_scope(max_norm, sparse, "torch.nn.functional.embedding")
    if weight.dim() != 2:
        raise ValueError(f"`weight` (shape {tuple(weight.shape)}) must be 2-D (num_embeddings, embedding_dim)")
    if input.is_floating_point() or input.is_complex() or input.dtype == torch.bool:
        raise ValueError(f"`input` (dtype {input.dtype}) must hold integer indices")
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    return EmbeddingFunction.apply(input, weight, padding_idx, bool(scale_grad_by_freq))


class Embedding(nn.Module):
    """Drop-in for `torch.nn.Embedding`: parameter `weight (num_embeddings, embedding_dim)`, same init.

    The init draws `N(0, 1)` and zeroes the `padding_idx` row, as torch does.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: torch.Tensor | None = None,
        _freeze: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _out_of_scope(max_norm, sparse, "torch.nn.Embedding")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = _padding_index(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            factory = {"device": device, "dtype": dtype}
            table = torch.empty((num_embeddings, embedding_dim), **factory)
            self.weight = nn.Parameter(table, requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(
                    f"`_weight` (shape {tuple(_weight.shape)}) must have shape ({num_embeddings}, {embedding_dim})"
                )
            self.weight = nn.Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        # The same single draw as torch.nn.Embedding, then the padding row zeroed.
        nn.init.normal_(self.weight)
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weight[self.padding_idx].fill_(0)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return embedding(input, self.weight, self.padding_idx, scale_grad_by_freq=self.scale_grad_by_freq)

    @classmethod
    def from_pretrained(
        cls,
        embeddings: torch.Tensor,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> "Embedding":
        """Like `torch.nn.Embedding.from_pretrained`: `embeddings (rows, dim)` become the weight."""
        if embeddings.dim() != 2:
            raise ValueError(f"`embeddings` (shape {tuple(embeddings.shape)}) must be 2-D")
        rows, cols = embeddings.shape
        return cls(
            rows, cols, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings, _freeze=freeze,
        )

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.scale_grad_by_freq:
            s += ", scale_grad_by_freq=True"
        return s
