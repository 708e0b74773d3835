"""Weights between a torch `state_dict` and a Flax NNX module, both directions.

Each module kind has a `ParamMap`: how its torch parameters (and buffers) become nnx
parameters and back. The maps are permutations, reorders and splits, so the same map also
carries gradients. Cases use the same maps, so what the crosscheck proves about a layer holds
for the weights a user ports.

Example:
    >>> from crosscheck.convert import torch_to_nnx
    >>> torch_to_nnx(torch.nn.Linear(3, 4), flax_linear)   # weight.T -> kernel, bias -> bias
"""

from __future__ import annotations

from ._core import (
    ParamMap as ParamMap,
    nnx_to_torch as nnx_to_torch,
    param_map as param_map,
    per_tensor as per_tensor,
    register_param_map as register_param_map,
    state_dict_to_nnx as state_dict_to_nnx,
    torch_to_nnx as torch_to_nnx,
)
