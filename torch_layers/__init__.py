"""PyTorch layers whose backward passes are written by hand (`torch.autograd.Function`).

Each functional form is a drop-in for the `torch.nn.functional` (or `torch`) function of the
same name, and each module for the `torch.nn` module of the same name.
"""

from .activation import (
    ELU as ELU, GELU as GELU, LeakyReLU as LeakyReLU, ReLU as ReLU, Sigmoid as Sigmoid, SiLU as SiLU,
    Softplus as Softplus, Tanh as Tanh, elu as elu, gelu as gelu, leaky_relu as leaky_relu, relu as relu,
    sigmoid as sigmoid, silu as silu, softplus as softplus, tanh as tanh,
)
from .attention import (
    MultiheadAttention as MultiheadAttention, ScaledDotProductAttention as ScaledDotProductAttention,
    multi_head_attention_forward as multi_head_attention_forward,
    scaled_dot_product_attention as scaled_dot_product_attention,
)
from .block import ConvBlock as ConvBlock, TransformerMLP as TransformerMLP, conv_block as conv_block, transformer_mlp as transformer_mlp
from .conv import (
    Conv1d as Conv1d, Conv2d as Conv2d, ConvTranspose2d as ConvTranspose2d, conv1d as conv1d, conv2d as conv2d,
    conv_transpose2d as conv_transpose2d,
)
from .dropout import Dropout as Dropout, dropout as dropout
from .embedding import Embedding as Embedding, embedding as embedding
from .linear import Linear as Linear, linear as linear
from .loss import CrossEntropyLoss as CrossEntropyLoss, MSELoss as MSELoss, cross_entropy as cross_entropy, mse_loss as mse_loss
from .norm import (
    BatchNorm2d as BatchNorm2d, GroupNorm as GroupNorm, LayerNorm as LayerNorm, RMSNorm as RMSNorm,
    batch_norm as batch_norm, group_norm as group_norm, layer_norm as layer_norm, rms_norm as rms_norm,
)
from .pool import AvgPool2d as AvgPool2d, MaxPool2d as MaxPool2d, avg_pool2d as avg_pool2d, max_pool2d as max_pool2d
from .recurrent import GRUCell as GRUCell, LSTMCell as LSTMCell, gru_cell as gru_cell, lstm_cell as lstm_cell
from .shape import Flatten as Flatten, Permute as Permute, Reshape as Reshape, flatten as flatten, permute as permute, reshape as reshape
from .softmax import LogSoftmax as LogSoftmax, Softmax as Softmax, log_softmax as log_softmax, softmax as softmax
