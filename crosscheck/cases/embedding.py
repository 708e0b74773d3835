"""Cases for `embedding`: torch `weight (num, dim)` <-> Flax `embedding (num, dim)`, same layout.

Indices repeat (three or more lookups per row), so a backward that overwrites instead of
accumulating is seen.

`padding_idx`: its row's zero gradient is a rule, not a derivative, so finite differences
would see the row through the lookups that read it. The padding cases therefore read out
`y - stop_gradient(y * pad)`: the padding positions' values are zero whatever the weight,
while their cotangents still reach the layer's backward, which must drop them. A backward
that forgets the padding row then fails finite differences as well as the cross checks. The
padding row is drawn as zero, as torch initialises it, so the modules (which read it as is)
agree with the case functions.

`scale_grad_by_freq` (torch only) divides each row's gradient by how often its index occurs
in the batch: a rule too. That case reads out `y / count` in value, each lookup divided by
its index's count, with the gradient passed to `y` unscaled, so the layer's rule is the true
derivative of what the case computes; the JAX side (Flax has no such option) computes
`y / count` plainly. Its modules are left out: they return `y`, and only torch's scales.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from ..registry import Case, Tensor, register


# The cases' draws, functions and modules are module-level, their options bound by
# `functools.partial`: they then pickle by reference, which closures do not.


def _indices(num_embeddings: int, padding_idx: int | None, rng, shape):
    """Indices in `[0, num)`; with a padding row, each trial reads it at least twice."""
    idx = rng.integers(0, num_embeddings, shape)
    if padding_idx is not None:
        flat = idx.reshape(shape[0], -1)
        flat[:, :2] = padding_idx % num_embeddings
        idx = rng.permuted(flat, axis=1).reshape(shape)
    return idx


def _table(padding_idx: int | None, rng, shape):
    w = rng.standard_normal(shape)
    if padding_idx is not None:
        w[:, padding_idx] = 0.0
    return w


def torch_read_out(input, y, pad_row):
    """`y` with the rows read at `pad_row` zeroed in value only: their cotangents pass through."""
    if pad_row is None:
        return y
    pad = (input == pad_row).unsqueeze(-1).to(y.dtype)
    return y - (y * pad).detach()


def jax_read_out(indices, y, pad_row):
    """`y` with the rows read at `pad_row` zeroed in value only: their cotangents pass through."""
    import jax

    if pad_row is None:
        return y
    pad = (indices == pad_row)[..., None].astype(y.dtype)
    return y - jax.lax.stop_gradient(y * pad)


def torch_per_count(input, y, by_freq):
    """With `by_freq`, `y / count` in value, each lookup divided by how often its index occurs in
    `input`, while the gradient reaches `y` as it is."""
    if not by_freq:
        return y
    count = (input.unsqueeze(-1) == input.reshape(-1)).sum(-1, keepdim=True).to(y.dtype)
    return (y / count).detach() + (y - y.detach())


def jax_per_count(indices, y, by_freq):
    """With `by_freq`, `y / count`, each lookup divided by how often its index occurs in `indices`."""
    if not by_freq:
        return y
    return y / (indices[..., None] == indices.reshape(-1)).sum(-1, keepdims=True).astype(y.dtype)


def _embedding_torch(input, weight, *, padding_idx, by_freq, pad_row):
    from torch_layers.embedding import embedding

    y = embedding(input, weight, padding_idx, scale_grad_by_freq=by_freq)
    return torch_read_out(input, torch_per_count(input, y, by_freq), pad_row)


def _embedding_torch_ref(input, weight, *, padding_idx, by_freq, pad_row):
    import torch.nn.functional as F

    y = F.embedding(input, weight, padding_idx, scale_grad_by_freq=by_freq)
    return torch_read_out(input, torch_per_count(input, y, by_freq), pad_row)


def _embedding_jax(indices, weight, *, padding_idx, by_freq, pad_row):
    from jax_layers.embedding import embedding

    return jax_read_out(indices, jax_per_count(indices, embedding(indices, weight, padding_idx), by_freq), pad_row)


def _embedding_jax_ref(indices, weight, *, num_embeddings, padding_idx, by_freq, pad_row):
    import jax
    import jax.numpy as jnp

    if padding_idx is not None:
        row = (jnp.arange(num_embeddings) == pad_row)[:, None]
        weight = jnp.where(row, jax.lax.stop_gradient(weight), weight)
    return jax_read_out(indices, jax_per_count(indices, jnp.take(weight, indices, axis=0), by_freq), pad_row)


def _embedding_torch_module(dtype, device, *, num_embeddings, dim, padding_idx):
    from torch_layers.embedding import Embedding

    return Embedding(num_embeddings, dim, padding_idx=padding_idx, dtype=dtype, device=device)


def _embedding_jax_module(dtype, *, num_embeddings, dim, padding_idx):
    from flax import nnx

    from jax_layers.embedding import Embed

    return Embed(num_embeddings, dim, dtype=dtype, param_dtype=dtype, padding_idx=padding_idx, rngs=nnx.Rngs(0))


def _case(name, index_shape, num_embeddings, dim, padding_idx=None, by_freq=False):
    pad_row = None if padding_idx is None else padding_idx % num_embeddings
    options = dict(padding_idx=padding_idx, by_freq=by_freq, pad_row=pad_row)
    table = dict(num_embeddings=num_embeddings, dim=dim, padding_idx=padding_idx)
    indices = functools.partial(_indices, num_embeddings, padding_idx)
    return Case(
        name=name,
        family="embedding",
        inputs=(Tensor("input", index_shape, kind="int", differentiable=False, draw=indices),),
        params=(
            Tensor("weight", (num_embeddings, dim), draw=functools.partial(_table, padding_idx), jax_name="embedding"),
        ),
        torch_fn=functools.partial(_embedding_torch, **options),
        torch_ref=functools.partial(_embedding_torch_ref, **options),
        jax_fn=functools.partial(_embedding_jax, **options),
        jax_ref=functools.partial(_embedding_jax_ref, num_embeddings=num_embeddings, **options),
        torch_module=None if by_freq else functools.partial(_embedding_torch_module, **table),
        jax_module=None if by_freq else functools.partial(_embedding_jax_module, **table),
        description=f"indices {index_shape} into ({num_embeddings}, {dim}), padding_idx={padding_idx}, "
        f"scale_grad_by_freq={by_freq}, {int(np.prod(index_shape))} lookups",
    )


def _bucket(rank, sizes, num_embeddings, dim, *, name, padding_idx, by_freq):
    return _case(name, sizes[:rank], num_embeddings, dim, padding_idx, by_freq)


def _register(name, index_shape, num_embeddings, dim, padding_idx=None, ranks=range(4), by_freq=False):
    """The case at its declared shapes, with index shapes of each rank in `ranks` (sizes 1..4
    per dim), vocabularies of up to 8 rows (enough to hold `padding_idx`) and 1..4 features
    as further shape buckets."""

    smallest = 1 if padding_idx is None else max(padding_idx + 1, -padding_idx)
    ranges = dict(rank=ranks, sizes=tuple(itertools.product(range(1, 5), repeat=3)),
                  num_embeddings=range(smallest, 9), dim=range(1, 5))
    build = functools.partial(_bucket, name=name, padding_idx=padding_idx, by_freq=by_freq)
    register(_case(name, index_shape, num_embeddings, dim, padding_idx, by_freq), build, ranges)


_register("embedding", (2, 1, 8), 5, 3)
_register("embedding-padding", (1, 7, 2), 4, 3, padding_idx=2)
_register("embedding-padding-negative", (9, 1, 2), 6, 2, padding_idx=-1)
_register("embedding-1d", (12,), 3, 4, ranks=(1,))
# 12 lookups into 5 rows: the counts differ from row to row, so a wrong divisor shows.
_register("embedding-scale-grad-by-freq", (3, 1, 4), 5, 3, by_freq=True)
