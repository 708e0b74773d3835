"""torch.nn.Embedding weight `(num, dim)` <-> flax.nnx.Embed embedding `(num, dim)`: same layout."""

from __future__ import annotations

from ..layout import IDENTITY
from ._core import per_tensor, register_param_map

EMBEDDING = per_tensor(("weight", "embedding", IDENTITY))


@register_param_map("Embedding")
def embedding(module):
    return EMBEDDING
