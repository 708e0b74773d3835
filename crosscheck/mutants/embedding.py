"""Planted bugs in the embedding backward: overwrite, padding row, wrong rows."""

from __future__ import annotations

import importlib

from ..cases.embedding import jax_read_out, torch_per_count, torch_read_out
from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _E():
    return importlib.import_module("jax_layers.embedding")


def _jax(bwd, pad_row=None):
    E = _E()
    f = jax_with_bwd(E._embedding, E._embedding_fwd, bwd, nondiff_argnums=(0, 1))
    return lambda idx, w: jax_read_out(idx, f(pad_row, w.shape[0], idx, w), pad_row)


def torch_grad_overwrites():
    import torch

    from torch_layers.embedding import EmbeddingFunction

    def backward(ctx, g):
        (input,) = ctx.saved_tensors
        num, dim = ctx.weight_shape
        # index_put without accumulate: a row read several times keeps one of its gradients.
        grad = torch.zeros((num, dim), dtype=g.dtype, device=g.device).index_put(
            (input.reshape(-1),), g.reshape(-1, dim)
        )
        return None, grad, None, None

    cls = torch_with_backward(EmbeddingFunction, backward)
    return lambda i, w: cls.apply(i, w, None, False)


def jax_grad_set_not_add():
    import jax.numpy as jnp

    def bwd(padding_idx, num, res, g):
        (indices,) = res
        dim = g.shape[-1]
        return None, jnp.zeros((num, dim), g.dtype).at[indices.reshape(-1)].set(g.reshape(-1, dim))

    return _jax(bwd)


def jax_padding_not_zeroed():
    E = _E()

    def bwd(padding_idx, num, res, g):
        return E._embedding_bwd(None, num, res, g)  # the padding row keeps its gradient

    return _jax(bwd, pad_row=2)  # "embedding-padding"


def torch_negative_padding_not_normalized():
    from torch_layers.embedding import EmbeddingFunction

    # padding_idx=-1 handed to the backward as is: `arange(num) != -1` zeroes no row.
    return lambda i, w: torch_read_out(i, EmbeddingFunction.apply(i, w, -1, False), w.shape[0] - 1)


def jax_grad_wrong_rows():
    import jax.numpy as jnp

    def bwd(padding_idx, num, res, g):
        (indices,) = res
        dim = g.shape[-1]
        # Off by one: each gradient lands in the next row (wrapping around).
        rows = (indices.reshape(-1) + 1) % num
        return None, jnp.zeros((num, dim), g.dtype).at[rows].add(g.reshape(-1, dim))

    return _jax(bwd)


def torch_freq_over_all_lookups():
    import torch

    from torch_layers.embedding import EmbeddingFunction

    def backward(ctx, g):
        (input,) = ctx.saved_tensors
        num, dim = ctx.weight_shape
        # scale_grad_by_freq: every row divided by the number of lookups, not by its own count.
        rows = g.reshape(-1, dim) / input.numel()
        grad = torch.zeros((num, dim), dtype=g.dtype, device=g.device).index_add(0, input.reshape(-1), rows)
        return None, grad, None, None

    cls = torch_with_backward(EmbeddingFunction, backward)
    return lambda i, w: torch_per_count(i, cls.apply(i, w, None, True), True)


for _name, _case, _side, _make, _desc in [
    ("grad-overwrites", "embedding", "torch", torch_grad_overwrites,
     "weight gradient written with index_put (no accumulate): repeated indices keep one gradient"),
    ("grad-set-not-add", "embedding-1d", "jax", jax_grad_set_not_add,
     "weight gradient scattered with .at[].set instead of .at[].add"),
    ("padding-not-zeroed", "embedding-padding", "jax", jax_padding_not_zeroed,
     "the padding_idx row keeps its gradient"),
    ("negative-padding-not-normalized", "embedding-padding-negative", "torch", torch_negative_padding_not_normalized,
     "padding_idx=-1 not turned into num_embeddings - 1, so no row is zeroed"),
    ("grad-wrong-rows", "embedding", "jax", jax_grad_wrong_rows,
     "weight gradient scattered into the next row"),
    ("freq-over-all-lookups", "embedding-scale-grad-by-freq", "torch", torch_freq_over_all_lookups,
     "scale_grad_by_freq divides by the number of lookups instead of each row's count"),
]:
    register_mutant(Mutant(f"embedding/{_name}", _case, _side, _make(), VALUES, _desc))
