"""How inputs are drawn: seeded numpy, shape `(trials, *shape)`, float64 before rounding."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

# Each draw is a module-level function with its options bound by `functools.partial`, so a
# case (and its inputs' draws) pickles by reference; a closure would not.


def _normal(scale, rng, shape):
    return scale * rng.standard_normal(shape)


def _uniform(low, high, rng, shape):
    return rng.uniform(low, high, shape)


def _integers(low, high, rng, shape):
    return rng.integers(low, high, shape)


def _away_from(points, margin, scale, rng, shape):
    x = scale * rng.standard_normal(shape)
    for p in points:
        near = np.abs(x - p) < margin
        x = np.where(near, p + np.sign(x - p + 0.5 * margin) * (margin + np.abs(x - p)), x)
    return x


def normal(scale: float = 1.0) -> Draw:
    return functools.partial(_normal, scale)


def uniform(low: float, high: float) -> Draw:
    return functools.partial(_uniform, low, high)


def integers(low: int, high: int) -> Draw:
    """Integers in `[low, high)`."""
    return functools.partial(_integers, low, high)


def away_from(points: tuple[float, ...], margin: float, scale: float = 1.0) -> Draw:
    """Normal draws pushed at least `margin` away from each kink in `points`.

    Finite differences straddling a kink measure the wrong slope; a margin of many steps keeps
    them meaningful.
    """
    return functools.partial(_away_from, tuple(points), margin, scale)
