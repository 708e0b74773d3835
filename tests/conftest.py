"""Shared test setup: JAX configured as a crosscheck run configures it, before any array exists."""

from __future__ import annotations

import crosscheck

# Before JAX's backend starts: every test then runs under the configuration a crosscheck run
# has (x64, which float64 gradchecks need, and the persistent cache), whichever test a worker
# happens to start with.
crosscheck.configure()
