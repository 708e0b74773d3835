"""A recurrent language model, tokens `(N, L)` -> logits `(N, L, 7)`: Embedding (7 x 6), a
cell of 5 run over the sequence from a zero state, Linear head. torch loops over time; the NNX
model scans its cell with `nnx.RNN`.

The cell is a parameter: torch's and Flax's LSTM cells take each other's weights (the two
torch biases are summed into Flax's one), and so do GRU cells when the nnx cell keeps a
recurrent bias (`jax_layers.GRUCell(use_recurrent_bias=True)`; flax.nnx.GRUCell has no
`b_hn`, so a torch GRUCell ports into it only when that bias is zero).
"""

from __future__ import annotations

import jax
import torch
from flax import nnx


class TorchLM(torch.nn.Module):
    """`cell`: a torch cell class (`LSTMCell` or `GRUCell`, from `layers` or elsewhere)."""

    def __init__(self, layers=torch.nn, cell=None):
        super().__init__()
        self.embed = layers.Embedding(7, 6)
        self.cell = (cell or layers.LSTMCell)(6, 5)
        self.head = layers.Linear(5, 7)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, state, hs = self.embed(tokens), None, []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)  # torch cells start from zeros when given None
            hs.append(state[0] if isinstance(state, tuple) else state)
        return self.head(torch.stack(hs, 1))


class NnxLM(nnx.Module):
    """`cell`: an nnx cell class, called as `cell(6, 5, rngs=rngs)`, run by `nnx.RNN` (one scan
    step, compiled once); torch's `cell` pairs with `rnn.cell`, the one nnx path ending in it."""

    def __init__(self, layers=nnx, cell=None, *, rngs: nnx.Rngs):
        self.embed = layers.Embed(7, 6, rngs=rngs)
        self.rnn = nnx.RNN((cell or layers.LSTMCell)(6, 5, rngs=rngs))
        self.head = layers.Linear(5, 7, rngs=rngs)

    def __call__(self, tokens):
        x = self.embed(tokens)
        # The cell's zero carry, in the inputs' dtype (Flax makes it in `param_dtype`), given
        # to the RNN so that it draws no RNG key inside a transform.
        carry = self.rnn.cell.initialize_carry(x[:, 0].shape, rngs=nnx.Rngs(0))
        carry = jax.tree.map(lambda a: a.astype(x.dtype), carry)
        return self.head(self.rnn(x, initial_carry=carry))
