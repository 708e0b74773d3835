"""The checks that mean most on a GPU (scripts/device_checks.py): on CPU, and on a GPU where
both frameworks see one."""

from __future__ import annotations

import contextlib

import jax
import pytest
import torch

from crosscheck.adapters.torch_adapter import TorchAdapter
from scripts import device_checks


def _gpu() -> bool:
    try:
        return torch.cuda.is_available() and len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


DEVICES = ["cpu", "cuda"] if _gpu() else ["cpu"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(device_checks.CHECKS))
def test_device_check(name, device):
    device_checks.CHECKS[name](device)


def test_the_tf32_check_fails_where_a_run_leaves_tf32_on(monkeypatch):
    monkeypatch.setattr("crosscheck.precision.full_precision", contextlib.nullcontext)
    with pytest.raises(AssertionError, match="TF32 settings during the run"):
        device_checks.tf32_off_during_a_run_and_restored("cpu", ["relu"])


def test_the_placement_check_fails_where_an_array_lies_elsewhere_and_restores_the_adapters(monkeypatch):
    before = TorchAdapter.__dict__["to_numpy"], TorchAdapter.__dict__["from_numpy"]
    monkeypatch.setattr(device_checks, "_jax_platform", lambda device: "gpu")  # JAX's arrays are wanted on a GPU
    with pytest.raises(AssertionError, match=r"arrays seen .*\('jax', 'cpu'\)"):
        device_checks.every_array_on_the_device("cpu", ["relu"])
    assert (TorchAdapter.__dict__["to_numpy"], TorchAdapter.__dict__["from_numpy"]) == before
