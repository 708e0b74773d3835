"""Case definitions, one module per layer family; importing this package registers them all."""

from . import activation, linear, shape  # noqa: F401
