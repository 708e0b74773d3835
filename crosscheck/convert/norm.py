"""Normalization layers: torch `weight`/`bias` <-> Flax `scale`/`bias`.

torch.nn.LayerNorm and RMSNorm hold `weight` in `normalized_shape`; flax.nnx.LayerNorm and
RMSNorm hold `scale` flat, `(prod(normalized_shape),)` (it is reshaped onto the feature axes).
torch.nn.BatchNorm2d's running statistics are flax.nnx.BatchNorm's batch stats `mean`/`var`;
`num_batches_tracked` has no Flax counterpart and stays as it is (`torch_only`).
"""

from __future__ import annotations

import functools

import numpy as np

from ..layout import IDENTITY, Layout
from ._core import per_tensor, register_param_map


def _flatten(a):
    return np.reshape(a, (a.shape[0], -1))


def _unflatten(shape, a):
    return np.reshape(a, (a.shape[0], *shape))


def flat(shape: tuple[int, ...]) -> Layout:
    """torch `shape` <-> Flax `(prod(shape),)`."""
    shape = tuple(shape)
    return Layout(f"flat{shape}", _flatten, functools.partial(_unflatten, shape))


AFFINE = per_tensor(("weight", "scale", IDENTITY), ("bias", "bias", IDENTITY))
BATCH_NORM = per_tensor(
    ("weight", "scale", IDENTITY), ("bias", "bias", IDENTITY),
    ("running_mean", "mean", IDENTITY), ("running_var", "var", IDENTITY),
    torch_only=("num_batches_tracked",),
)


@register_param_map("LayerNorm")
def layer_norm(module):
    lay = flat(module.normalized_shape)
    return per_tensor(("weight", "scale", lay), ("bias", "bias", lay))


@register_param_map("RMSNorm")
def rms_norm(module):
    return per_tensor(("weight", "scale", flat(module.normalized_shape)))


@register_param_map("GroupNorm")
def group_norm(module):
    return AFFINE


@register_param_map("BatchNorm2d")
def batch_norm_2d(module):
    return BATCH_NORM
