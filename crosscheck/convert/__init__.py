"""Weights between torch and Flax NNX, both directions: one layer, or whole models.

Each module kind has a `ParamMap`: how its torch parameters (and buffers) become nnx
parameters and back. The maps are permutations, reorders and splits, so the same map also
carries gradients. Cases use the same maps, so what the crosscheck proves about a layer holds
for the weights a user ports. A whole model is converted layer by layer: its torch modules
that have a map are paired with nnx modules by path (`match_modules`), and every parameter and
buffer on both sides must be accounted for (`strict=True`).

Example:
    >>> from crosscheck.convert import torch_to_nnx
    >>> torch_to_nnx(torch.nn.Linear(3, 4), flax_linear)   # weight.T -> kernel, bias -> bias
    >>> torch_to_nnx(torch_mlp, nnx_mlp)                   # nn.Sequential -> nnx.Sequential
"""

from __future__ import annotations

from ._checkpoint import (
    load_checkpoint as load_checkpoint,
    load_state_dict as load_state_dict,
    save_checkpoint as save_checkpoint,
    save_state_dict as save_state_dict,
)
from ._core import (
    ParamMap as ParamMap,
    param_map as param_map,
    per_tensor as per_tensor,
    register_param_map as register_param_map,
)
from ._model import (
    Conversion as Conversion,
    ConversionError as ConversionError,
    ConversionWarning as ConversionWarning,
    nnx_to_state_dict as nnx_to_state_dict,
    nnx_to_torch as nnx_to_torch,
    state_dict_to_nnx as state_dict_to_nnx,
    torch_to_nnx as torch_to_nnx,
)
from ._pair import Pairing as Pairing, match_modules as match_modules, pair_modules as pair_modules
