"""Small helpers shared by the layer tests."""

from __future__ import annotations

import numpy as np
import torch


def np_rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def t64(a, requires_grad: bool = True) -> torch.Tensor:
    """A float64 torch tensor from numpy, for gradcheck."""
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=requires_grad)


def assert_grads_match(torch_loss_fn, ours: list[torch.Tensor], theirs: list[torch.Tensor], rtol=1e-12, atol=1e-12):
    """Forward and gradients of the same loss over two lists of leaves agree."""
    out_a, out_b = torch_loss_fn(ours), torch_loss_fn(theirs)
    torch.testing.assert_close(out_a, out_b, rtol=rtol, atol=atol)
    grads_a = torch.autograd.grad(out_a, ours)
    grads_b = torch.autograd.grad(out_b, theirs)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
