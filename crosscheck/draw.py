"""How inputs are drawn: seeded numpy, shape `(trials, *shape)`, float64 before rounding."""

from __future__ import annotations

from typing import Callable

import numpy as np

Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def normal(scale: float = 1.0) -> Draw:
    return lambda rng, shape: scale * rng.standard_normal(shape)


def uniform(low: float, high: float) -> Draw:
    return lambda rng, shape: rng.uniform(low, high, shape)


def integers(low: int, high: int) -> Draw:
    """Integers in `[low, high)`."""
    return lambda rng, shape: rng.integers(low, high, shape)


def away_from(points: tuple[float, ...], margin: float, scale: float = 1.0) -> Draw:
    """Normal draws pushed at least `margin` away from each kink in `points`.

    Finite differences straddling a kink measure the wrong slope; a margin of many steps keeps
    them meaningful.
    """

    def draw(rng, shape):
        x = scale * rng.standard_normal(shape)
        for p in points:
            near = np.abs(x - p) < margin
            x = np.where(near, p + np.sign(x - p + 0.5 * margin) * (margin + np.abs(x - p)), x)
        return x

    return draw
