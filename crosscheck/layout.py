"""Layouts: how an array in torch's layout maps into JAX's layout and back.

Cases hold numpy arrays in torch's layout (the canonical one); each tensor's layout says how
to place it for JAX (`to_jax`) and how to bring a JAX gradient back (`from_jax`) so that the
two frameworks are always compared in one layout. Every function takes a leading trial axis.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Layout:
    """A pair of inverse maps between torch's layout and JAX's, on arrays of shape `(trials, *shape)`."""

    name: str
    to_jax: Callable[[np.ndarray], np.ndarray]
    from_jax: Callable[[np.ndarray], np.ndarray]

    def jax_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.to_jax(np.empty((1, *shape)))[0].shape


def _ident(a):
    return a


IDENTITY = Layout("identity", _ident, _ident)


def _transpose(axes, a):
    return np.transpose(a, axes)


def permute(*perm: int) -> Layout:
    """JAX layout = torch layout with its axes permuted by `perm` (as in `np.transpose`).

    Its maps are `functools.partial`s of a module-level function, so a layout pickles."""
    inverse = tuple(int(i) for i in np.argsort(perm))
    to_jax = functools.partial(_transpose, (0, *(int(p) + 1 for p in perm)))
    from_jax = functools.partial(_transpose, (0, *(p + 1 for p in inverse)))
    return Layout(f"permute{tuple(perm)}", to_jax, from_jax)


TRANSPOSE = permute(1, 0)


@functools.cache
def channels_last(spatial: int, batched: bool = True) -> Layout:
    """torch's channels-first `(N, C, *spatial)` as JAX's channels-last `(N, *spatial, C)`, for
    `spatial` spatial axes; without the batch axis (`batched=False`), `(C, *spatial)` as
    `(*spatial, C)`. The one table of channels-last layouts: convolutions, pooling, norms."""
    lead = (0,) if batched else ()
    c = len(lead)
    return permute(*lead, *range(c + 1, c + 1 + spatial), c)


def _channels_last_any(a):
    return np.moveaxis(a, 2, -1) if a.ndim >= 4 else a  # axis 0 is the trial axis


def _channels_first_any(a):
    return np.moveaxis(a, -1, 2) if a.ndim >= 4 else a


CHANNELS_LAST_ANY_RANK = Layout("channels-last", _channels_last_any, _channels_first_any)
"""`channels_last` for arrays whose rank is known only when they exist (a model's inputs and
outputs in `check_port`): torch `(N, C, *spatial)` <-> NNX `(N, *spatial, C)` for rank 3 or
more (per trial); smaller ones as they are."""
