"""Checkpoints: torch.save and safetensors files into an NNX model (and the port check passes),
an NNX model out to either format, and files that must be refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from flax import nnx

from crosscheck.convert import ConversionError, load_checkpoint, load_state_dict, nnx_to_torch, save_checkpoint, save_state_dict
from crosscheck.models import EXAMPLES
from crosscheck.port import check_port
from crosscheck.report import format_failures

FORMATS = [".pt", ".safetensors"]
EX = EXAMPLES["cnn"]  # BatchNorm: running statistics and an integer count go through the file too


def _trained():
    torch.manual_seed(0)
    model = EX.torch_model()
    bn = model.features[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 1.5)
    bn.num_batches_tracked.fill_(7)
    return model


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_checkpoint_loads_into_an_nnx_model_that_passes_the_port_check(suffix, tmp_path):
    source = _trained()
    path = tmp_path / f"cnn{suffix}"
    save_state_dict(source.state_dict(), path)
    torch.manual_seed(1)
    template, model = EX.torch_model(), EX.nnx_model(nnx.Rngs(0))  # the template's weights are never read
    load_checkpoint(path, template, model)
    np.testing.assert_array_equal(model.features.layers[1].var.get_value(), source.features[1].running_var.numpy())
    report = check_port(source, model, EX.inputs, name="cnn")
    assert report.passed, format_failures(report)


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_nnx_model_saves_as_a_torch_checkpoint(suffix, tmp_path):
    model = EX.nnx_model(nnx.Rngs(2))
    template = _trained()
    before = {k: v.clone() for k, v in template.state_dict().items()}
    path = tmp_path / f"cnn{suffix}"
    save_checkpoint(model, template, path)
    for key, value in template.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    want = _trained()
    nnx_to_torch(model, want)
    got = load_state_dict(path)
    assert sorted(got) == sorted(want.state_dict())  # safetensors sorts its entries
    for key, value in want.state_dict().items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
    # Flax keeps no count of batches: the file has the template's.
    assert int(got["features.1.num_batches_tracked"]) == 7


class _NotATensor:
    pass


def test_a_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "extra": _NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state_dict(path)


def test_a_file_that_is_no_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match=rf"`path` \(='{path}'\) holds a list, not a state_dict of tensors"):
        load_state_dict(path)


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_checkpoint_of_another_model_is_named_entry_by_entry(suffix, tmp_path):
    state = _trained().state_dict()
    state.pop("head.bias")
    state["extra"] = torch.zeros(2)
    path = tmp_path / f"cnn{suffix}"
    save_state_dict(state, path)
    with pytest.raises(ConversionError) as e:
        load_checkpoint(path, EX.torch_model(), EX.nnx_model(nnx.Rngs(0)))
    assert e.value.problems == [
        "state_dict entry `extra` (2,) is not in the torch model (TorchCNN)",
        "torch `head.bias` (6,) is missing from the state_dict",
        "nnx `head.bias` (6,) has no counterpart in the torch model: torch `head` (Linear) has nothing that maps to it; "
        "it holds: weight (6, 4), bias (6,)",
    ]


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_checkpoint_comes_back_through_an_nnx_model_bit_for_bit(suffix, tmp_path):
    source = _trained()
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    save_state_dict(source.state_dict(), first)
    model = EX.nnx_model(nnx.Rngs(3))
    load_checkpoint(first, EX.torch_model(), model)
    save_checkpoint(model, _trained(), second)  # the template gives num_batches_tracked, 7 as in the source
    got = load_state_dict(second)
    assert sorted(got) == sorted(source.state_dict())
    for key, value in source.state_dict().items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
