"""Shared test setup: x64 for JAX before any array exists, and the registry's ids."""

from __future__ import annotations

# The JAX adapter first, before JAX's backend starts: it sets the compile options that the
# program cache's keys assume (`XLA_FLAGS`), which a backend started without them ignores; a
# test could then read a program compiled under other options (a 1-ulp difference failed the
# `--jobs` report test under `-n 2`).
import crosscheck.adapters.jax_adapter  # noqa: F401, I001
import jax

# float64 gradchecks need x64; it is global and must be set before any array exists.
jax.config.update("jax_enable_x64", True)
