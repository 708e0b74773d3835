"""Four small models, each written for torch and for Flax NNX, from the frameworks' built-in
layers (`torch.nn`, `flax.nnx`: the default) or from this repository's (`torch_layers`,
`jax_layers`: `layers=`), to port between the two and prove the port (`crosscheck.port`).

Sizes are tiny, distinct and non-square, with a size-1 dimension in the MLP's input and the
encoder's batch: a transposed weight or a missing broadcast sum cannot hide.

Example:
    >>> from crosscheck.models import EXAMPLES
    >>> ex = EXAMPLES["cnn-ours"]
    >>> torch_model, nnx_model = ex.torch_model(), ex.nnx_model(nnx.Rngs(0))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from .. import draw
from ..layout import IDENTITY, Layout, permute
from ..registry import Tensor
from .cnn import NnxCNN as NnxCNN, TorchCNN as TorchCNN
from .encoder import NnxEncoderBlock as NnxEncoderBlock, TorchEncoderBlock as TorchEncoderBlock
from .lm import NnxLM as NnxLM, TorchLM as TorchLM
from .mlp import NnxMLP as NnxMLP, TorchMLP as TorchMLP

NCHW_TO_NHWC = permute(0, 2, 3, 1)


@dataclass(frozen=True)
class Example:
    """A torch model and its NNX twin, with the inputs they take (torch's layout)."""

    name: str
    torch_model: Callable[[], object]
    nnx_model: Callable[..., object]  # nnx_model(rngs)
    inputs: tuple[Tensor, ...]
    out_layouts: tuple[Layout, ...] = (IDENTITY,)


def _examples() -> dict[str, Example]:
    import flax.nnx
    import torch

    import jax_layers
    import torch_layers

    shapes = {
        "mlp": ((TorchMLP, NnxMLP), (Tensor("x", (4, 1, 5)),)),
        "cnn": ((TorchCNN, NnxCNN), (Tensor("x", (5, 3, 2, 3), layout=NCHW_TO_NHWC),)),
        "encoder": ((TorchEncoderBlock, NnxEncoderBlock), (Tensor("x", (1, 4, 6)),)),
    }
    tokens = (Tensor("tokens", (3, 4), kind="int", differentiable=False, draw=draw.integers(0, 7)),)
    out = {}
    for name, ((t_cls, n_cls), inputs) in shapes.items():
        out[name] = Example(name, t_cls, lambda rngs, n_cls=n_cls: n_cls(rngs=rngs), inputs)
        out[f"{name}-ours"] = Example(
            f"{name}-ours", functools.partial(t_cls, torch_layers), lambda rngs, n_cls=n_cls: n_cls(jax_layers, rngs=rngs), inputs
        )
    # LSTM between the built-ins; GRU between ours, whose nnx cell keeps torch's recurrent bias.
    out["lm"] = Example("lm", functools.partial(TorchLM, torch.nn, torch.nn.LSTMCell),
                        lambda rngs: NnxLM(flax.nnx, flax.nnx.LSTMCell, rngs=rngs), tokens)
    gru = functools.partial(jax_layers.GRUCell, use_recurrent_bias=True)
    out["lm-ours"] = Example("lm-ours", functools.partial(TorchLM, torch_layers, torch_layers.GRUCell),
                             lambda rngs: NnxLM(jax_layers, gru, rngs=rngs), tokens)
    return out


EXAMPLES: dict[str, Example] = _examples()
