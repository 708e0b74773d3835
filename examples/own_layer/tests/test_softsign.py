"""softsign's hand-written backward passes, checked by crosscheck: through its pytest plugin
(one item per case and dtype) and through the one call."""

from __future__ import annotations

import jax
import torch

import crosscheck
import softsign_layers.crosscheck_cases  # noqa: F401  (registers the cases)
from softsign_layers.jax_softsign import softsign as jax_softsign
from softsign_layers.torch_softsign import softsign as torch_softsign


def test_crosscheck(crosscheck_case):
    crosscheck_case.check()


def test_one_call_torch_alone():
    # Without the JAX twin: the contract, finite differences, autodiff of the reference and
    # the float64 oracle still run; the report lists what could not.
    report = crosscheck.assert_agree(torch_softsign, inputs=[(4, 1, 3)], torch_ref=torch.nn.functional.softsign)
    assert report.not_run


def test_one_call_both():
    crosscheck.assert_agree(torch_softsign, jax_softsign, inputs=[(4, 1, 3)], torch_ref=torch.nn.functional.softsign,
                            jax_ref=jax.nn.soft_sign, dtypes=["float64", "float32"])
