"""Planted backward bugs: the suite tests itself.

A mutant swaps one side's custom function of a case for one whose backward is broken in a
realistic way; the harness must fail it, in the check one would expect. Mutants are data in
the registry, never edits to layer files. One module per layer family, found automatically.
"""

from ._core import (
    Mutant as Mutant,
    all_mutants as all_mutants,
    jax_with_bwd as jax_with_bwd,
    register_mutant as register_mutant,
    torch_with_backward as torch_with_backward,
)
