"""Blocks composed only of this package's layers, so a chain of hand-written backward passes
is checked end to end: a pre-norm transformer MLP block and a small CNN block."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from .activation import GELU, SiLU
from .conv import Conv2d
from .linear import Linear
from .norm import GroupNorm, LayerNorm
from .pool import AvgPool2d

# The function names shadow their modules as package attributes, so import modules by path.
_act = importlib.import_module("torch_layers.activation")
_conv = importlib.import_module("torch_layers.conv")
_lin = importlib.import_module("torch_layers.linear")
_norm = importlib.import_module("torch_layers.norm")
_pool = importlib.import_module("torch_layers.pool")


def transformer_mlp(input, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps: float = 1e-5):
    """`x + fc2(gelu(fc1(layer_norm(x))))` over the last dim of `input (..., d_model)`."""
    h = _norm.layer_norm(input, input.shape[-1:], norm_weight, norm_bias, eps)
    h = _act.gelu(_lin.linear(h, fc1_weight, fc1_bias))
    return input + _lin.linear(h, fc2_weight, fc2_bias)


class TransformerMLP(nn.Module):
    """Pre-norm residual MLP: parameters `norm.{weight,bias}`, `fc1.*`, `fc2.*` (torch layouts)."""

    def __init__(self, d_model: int, d_hidden: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.norm = LayerNorm(d_model, eps=eps, **factory)
        self.fc1 = Linear(d_model, d_hidden, **factory)
        self.act = GELU()
        self.fc2 = Linear(d_hidden, d_model, **factory)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input + self.fc2(self.act(self.fc1(self.norm(input))))


def conv_block(input, conv_weight, conv_bias, norm_weight, norm_bias, num_groups: int, eps: float = 1e-5):
    """`avg_pool2d(silu(group_norm(conv2d(x, padding=(1, 0)))), 2)` for `input (N, C, H, W)`, kernel 3x2.

    SiLU rather than ReLU and average rather than max pooling: both stay differentiable
    everywhere, so finite differences and low-precision rounding never meet a kink or a tie.
    """
    h = _conv.conv2d(input, conv_weight, conv_bias, padding=(1, 0))
    h = _act.silu(_norm.group_norm(h, num_groups, norm_weight, norm_bias, eps))
    return _pool.avg_pool2d(h, 2)


class ConvBlock(nn.Module):
    """3x2 conv (height padded), GroupNorm, SiLU, 2x2 average pool: parameters `conv.*`, `norm.*`.

    The kernel is not square, so a gradient with its spatial axes swapped cannot hide.
    """

    def __init__(self, in_channels: int, out_channels: int, num_groups: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.conv = Conv2d(in_channels, out_channels, (3, 2), padding=(1, 0), **factory)
        self.norm = GroupNorm(num_groups, out_channels, eps=eps, **factory)
        self.act = SiLU()
        self.pool = AvgPool2d(2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(input))))
