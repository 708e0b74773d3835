"""JAX layers whose VJPs are written by hand (`jax.custom_vjp`), with Flax NNX modules."""

from .activation import Sigmoid as Sigmoid, sigmoid as sigmoid
from .linear import Linear as Linear, linear as linear
from .shape import Reshape as Reshape, reshape as reshape
