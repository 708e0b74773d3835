"""Shared test setup: x64 for JAX before any array exists, and the registry's ids."""

from __future__ import annotations

# The JAX adapter first, before JAX's backend starts: every test then runs under the
# configuration a crosscheck run has (x64, the persistent cache), whichever test a worker
# happens to start with.
import crosscheck.adapters.jax_adapter  # noqa: F401, I001
import jax

# float64 gradchecks need x64; it is global and must be set before any array exists.
jax.config.update("jax_enable_x64", True)
