"""Shared test setup: x64 for JAX before any array exists, and the registry's ids."""

from __future__ import annotations

import jax

# float64 gradchecks need x64; it is global and must be set before any array exists.
jax.config.update("jax_enable_x64", True)
