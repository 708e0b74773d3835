"""Embedding lookup: `weight[indices]`, with a hand-written scatter-add VJP.

The table's row count travels with `padding_idx` as `nondiff_argnums`: the backward needs
the shape of the weight, not its values, so only the indices are kept as residuals.
"""

from __future__ import annotations

from functools import partial
from types import MappingProxyType

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes
from flax.nnx.nn.linear import default_embed_init

from ._ops import refuse_out_sharding
from .linear import linear


def _embedding(padding_idx, num_embeddings, indices, weight):
    # Like flax.nnx.Embed: negative indices count from the end, out-of-range ones give NaN.
    return jnp.take(weight, indices, axis=0)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _embedding_vjp(padding_idx, num_embeddings, indices, weight):
    return _embedding(padding_idx, num_embeddings, indices, weight)


def _embedding_fwd(padding_idx, num_embeddings, indices, weight):
    return _embedding(padding_idx, num_embeddings, indices, weight), (indices,)


def _embedding_bwd(padding_idx, num_embeddings, res, g):
    (indices,) = res
    dim = g.shape[-1]
    # Half-precision sums of many rows lose digits; accumulate in float32 at least.
    dtype = jnp.promote_types(g.dtype, jnp.float32)
    rows = g.reshape(-1, dim).astype(dtype)
    # `.add`, not `.set`: a row read several times collects every one of its gradients.
    grad = jnp.zeros((num_embeddings, dim), dtype).at[indices.reshape(-1)].add(rows)
    if padding_idx is not None:
        grad = grad.at[padding_idx].set(0)
    return None, grad.astype(g.dtype)


_embedding_vjp.defvjp(_embedding_fwd, _embedding_bwd)


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    """`padding_idx` in `[0, num_embeddings)`; negative values count from the end, as in torch."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"`padding_idx` (={padding_idx}) must be within num_embeddings (={num_embeddings})")
    return padding_idx % num_embeddings


def embedding(indices: jax.Array, weight: jax.Array, padding_idx: int | None = None) -> jax.Array:
    """`weight[indices]` with a scatter-add VJP; the `padding_idx` row gets no gradient.

    Args:
        indices: integers of any shape `(...)`.
        weight: `(num_embeddings, features)`.
        padding_idx: the row that gets no gradient (negative counts from the end), or None.

    Returns:
        `(..., features)`.
    """
    if weight.ndim != 2:
        raise ValueError(f"`weight` (shape {weight.shape}) must be 2-D (num_embeddings, features)")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"`indices` (dtype {indices.dtype}) must hold integer indices")
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    return _embedding_vjp(padding_idx, weight.shape[0], indices, weight)


class Embed(nnx.Module):
    """Drop-in for `flax.nnx.Embed`: param `embedding (num_embeddings, features)`, same init.

    `padding_idx` is an addition for parity with `torch.nn.Embedding`: that row starts at zero
    and gets no gradient. Left at None, the module is `flax.nnx.Embed`.

    Example:
        >>> layer = Embed(5, 3, rngs=nnx.Rngs(0))
        >>> layer(jnp.array([[0, 1], [4, 4]])).shape
        (2, 2, 3)
    """

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        dtype=None,
        param_dtype=jnp.float32,
        embedding_init=default_embed_init,
        promote_dtype=dtypes.promote_dtype,
        padding_idx: int | None = None,
        rngs: nnx.Rngs,
        embedding_metadata=MappingProxyType({}),
    ):
        # The same single key as flax.nnx.Embed, so equal Rngs give equal tables.
        table = embedding_init(rngs.params(), (num_embeddings, features), param_dtype)
        self.padding_idx = _padding_index(padding_idx, num_embeddings)
        if self.padding_idx is not None:
            table = table.at[self.padding_idx].set(0)
        self.embedding = nnx.Param(table, **embedding_metadata)
        self.num_embeddings = num_embeddings
        self.features = features
        self.dtype = dtype or self.embedding.dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        """`(...)` integer indices -> `(..., features)`."""
        refuse_out_sharding(out_sharding, "flax.nnx.Embed")
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError(f"`inputs` (dtype {inputs.dtype}) must hold integer indices")
        (table,) = self.promote_dtype((self.embedding[...],), dtype=self.dtype, inexact=False)
        if self.num_embeddings == 1:
            # flax broadcasts the single row whatever the index; so do all indices read row 0.
            inputs = jnp.zeros_like(inputs)
        return embedding(inputs, table, self.padding_idx)

    def attend(self, query: jax.Array) -> jax.Array:
        """`query (..., features)` against every row: `(..., num_embeddings)`."""
        return linear(query.astype(self.dtype), self.embedding[...].astype(self.dtype).T)
