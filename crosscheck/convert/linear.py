"""torch.nn.Linear weight `(out, in)` <-> flax.nnx.Linear kernel `(in, out)`."""

from __future__ import annotations

from ..layout import IDENTITY, TRANSPOSE
from ._core import per_tensor, register_param_map

LINEAR = per_tensor(("weight", "kernel", TRANSPOSE), ("bias", "bias", IDENTITY))


@register_param_map("Linear")
def linear(module):
    return LINEAR
