"""JAX layers whose VJPs are written by hand (`jax.custom_vjp`), with Flax NNX modules.

Modules are drop-ins for the `flax.nnx` modules of the same name where Flax has one; functions
are named like `jax.nn`'s. Layouts are JAX's own: channels-last inputs, `(in, out)` kernels.
"""

from .activation import (
    ELU as ELU, GELU as GELU, LeakyReLU as LeakyReLU, ReLU as ReLU, Sigmoid as Sigmoid, SiLU as SiLU,
    Softplus as Softplus, Tanh as Tanh, elu as elu, gelu as gelu, leaky_relu as leaky_relu, relu as relu,
    sigmoid as sigmoid, silu as silu, softplus as softplus, tanh as tanh,
)
from .attention import (
    DotProductAttention as DotProductAttention, MultiHeadAttention as MultiHeadAttention,
    dot_product_attention as dot_product_attention, multi_head_attention as multi_head_attention,
)
from .block import ConvBlock as ConvBlock, TransformerMLP as TransformerMLP, conv_block as conv_block, transformer_mlp as transformer_mlp
from .conv import Conv as Conv, ConvTranspose as ConvTranspose, conv as conv, conv_transpose as conv_transpose
from .dropout import Dropout as Dropout, dropout as dropout
from .embedding import Embed as Embed, embedding as embedding
from .linear import Linear as Linear, linear as linear
from .loss import CrossEntropyLoss as CrossEntropyLoss, MSELoss as MSELoss, cross_entropy as cross_entropy, mse_loss as mse_loss
from .norm import (
    BatchNorm as BatchNorm, GroupNorm as GroupNorm, LayerNorm as LayerNorm, RMSNorm as RMSNorm,
    batch_norm as batch_norm, group_norm as group_norm, layer_norm as layer_norm, rms_norm as rms_norm,
)
from .pool import AvgPool as AvgPool, MaxPool as MaxPool, avg_pool as avg_pool, max_pool as max_pool
from .recurrent import GRUCell as GRUCell, LSTMCell as LSTMCell, gru_cell as gru_cell, lstm_cell as lstm_cell
from .shape import Flatten as Flatten, Permute as Permute, Reshape as Reshape, flatten as flatten, permute as permute, reshape as reshape
from .softmax import LogSoftmax as LogSoftmax, Softmax as Softmax, log_softmax as log_softmax, softmax as softmax
