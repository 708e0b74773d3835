"""Whole-model conversion: containers and paths, strictness (every parameter and buffer
accounted for, by name on both sides), `strict=False`, and user mappings."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from crosscheck.convert import ConversionError, ConversionWarning, match_modules, nnx_to_torch, torch_to_nnx


def _torch_mlp(last_bias=True):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3, bias=last_bias))


def _nnx_mlp(last_bias=True, out=3):
    rngs = nnx.Rngs(0)
    return nnx.Sequential(nnx.Linear(5, 7, rngs=rngs), nnx.tanh, nnx.Linear(7, out, use_bias=last_bias, rngs=rngs))


def _nnx_values(model) -> dict:
    return {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


class TorchNest(torch.nn.Module):
    """A ModuleList, a ModuleDict and attributes nested two deep."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)])
        self.heads = torch.nn.ModuleDict({"score": torch.nn.Linear(3, 1), "embed": torch.nn.Embedding(6, 2)})
        self.inner = torch.nn.Module()
        self.inner.norm = torch.nn.BatchNorm2d(2)


class NnxNest(nnx.Module):
    def __init__(self, rngs):
        self.blocks = nnx.List([nnx.Linear(4, 3, rngs=rngs), nnx.LayerNorm(3, rngs=rngs)])
        self.heads = nnx.Dict({"score": nnx.Linear(3, 1, rngs=rngs), "embed": nnx.Embed(6, 2, rngs=rngs)})
        self.inner = nnx.Dict({"norm": nnx.BatchNorm(2, rngs=rngs)})


def test_containers_pair_by_path_and_round_trip():
    torch.manual_seed(0)
    source, model, back = TorchNest(), NnxNest(nnx.Rngs(0)), TorchNest()
    source.inner.norm.running_var.uniform_(0.5, 1.5)
    assert match_modules(source, model) == {
        "blocks.0": "blocks.0", "blocks.1": "blocks.1", "heads.score": "heads.score",
        "heads.embed": "heads.embed", "inner.norm": "inner.norm",
    }
    torch_to_nnx(source, model)
    np.testing.assert_array_equal(model.blocks[0].kernel.get_value(), source.blocks[0].weight.detach().numpy().T)
    np.testing.assert_array_equal(model.inner["norm"].var.get_value(), source.inner.norm.running_var.numpy())
    nnx_to_torch(model, back)
    for key, value in source.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_a_torch_bias_the_nnx_model_lacks_is_named_on_both_sides():
    model = _nnx_mlp(last_bias=False)
    before = _nnx_values(model)
    with pytest.raises(ConversionError) as e:
        torch_to_nnx(_torch_mlp(), model)
    assert e.value.problems == [
        "torch `2.bias` -> nnx `layers.2.bias` (3,): the nnx model has no such entry; nnx `layers.2` holds: kernel (7, 3)"
    ]
    # Strict means nothing is written.
    for key, value in _nnx_values(model).items():
        np.testing.assert_array_equal(value, before[key])
    with pytest.raises(ConversionError) as e:
        nnx_to_torch(model, _torch_mlp())
    assert e.value.problems == [
        "torch `2.bias` (3,) has no counterpart in the nnx model: nnx `layers.2` (Linear) has nothing that maps to it; "
        "it holds: kernel (7, 3)"
    ]


def test_an_nnx_bias_the_torch_model_lacks_is_named_on_both_sides():
    torch_model = _torch_mlp(last_bias=False)
    with pytest.raises(ConversionError) as e:
        torch_to_nnx(torch_model, _nnx_mlp())
    assert e.value.problems == [
        "nnx `layers.2.bias` (3,) has no counterpart in the torch model: torch `2` (Linear) has nothing that maps to it; "
        "it holds: weight (3, 7)"
    ]
    before = {k: v.clone() for k, v in torch_model.state_dict().items()}
    with pytest.raises(ConversionError) as e:
        nnx_to_torch(_nnx_mlp(), torch_model)
    assert e.value.problems == [
        "nnx `layers.2` -> torch `2.bias` (3,): the torch model has no such entry; torch `2` holds: weight (3, 7)"
    ]
    for key, value in torch_model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_shape_mismatch_names_both_paths_and_shapes():
    with pytest.raises(ConversionError) as e:
        torch_to_nnx(_torch_mlp(), _nnx_mlp(out=4))
    assert e.value.problems == [
        "torch `2.weight` -> nnx `layers.2.kernel`: the torch side gives (7, 3), the nnx model holds (7, 4)",
        "torch `2.bias` -> nnx `layers.2.bias`: the torch side gives (3,), the nnx model holds (4,)",
    ]
    with pytest.raises(ConversionError, match=r"nnx `layers.2` -> torch `2.weight`: the nnx side gives \(4, 7\), the torch model holds \(3, 7\)"):
        nnx_to_torch(_nnx_mlp(out=4), _torch_mlp())


def test_non_strict_converts_the_rest_and_reports_what_it_skipped():
    torch_model, model = _torch_mlp(), _nnx_mlp(last_bias=False)
    with pytest.warns(ConversionWarning, match=r"torch -> nnx skipped 1:\n  - torch `2.bias` -> nnx `layers.2.bias`"):
        done = torch_to_nnx(torch_model, model, strict=False)
    assert done.skipped == ["torch `2.bias` -> nnx `layers.2.bias` (3,): the nnx model has no such entry; nnx `layers.2` holds: kernel (7, 3)"]
    assert done.written == ["layers.0.bias", "layers.0.kernel", "layers.2.kernel"]
    np.testing.assert_array_equal(model.layers[2].kernel.get_value(), torch_model[2].weight.detach().numpy().T)
    # Back into torch: the bias that the nnx model does not have stays torch's own, and is reported.
    back = _torch_mlp()
    with torch.no_grad():
        back[2].bias.fill_(0.5)
    with pytest.warns(ConversionWarning, match=r"nnx -> torch skipped 1:\n  - torch `2.bias` \(3,\) has no counterpart"):
        done = nnx_to_torch(model, back, strict=False)
    assert torch.equal(back[2].bias, torch.full((3,), 0.5))
    assert torch.equal(back[2].weight, torch_model[2].weight)


def test_a_torch_module_without_a_conversion_is_named():
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5, 3)
            self.scale = torch.nn.Parameter(torch.ones(3))

    class NnxScaled(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(5, 3, rngs=nnx.Rngs(0))

    with pytest.raises(ConversionError) as e:
        torch_to_nnx(Scaled(), NnxScaled())
    (problem,) = e.value.problems
    assert problem.startswith("torch `scale` (3,) has no counterpart in the nnx model: no weight conversion for the torch model itself (Scaled); known: ")


def test_names_that_differ_pair_through_a_mapping():
    torch.manual_seed(0)
    torch_model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.encoder = nnx.Dict({"proj": nnx.Linear(5, 7, rngs=rngs)})
            self.head = nnx.Linear(7, 3, rngs=rngs)

    model = Net(nnx.Rngs(0))
    with pytest.raises(ConversionError, match="no nnx module at `0` to pair with torch `0`; pass `mapping`"):
        torch_to_nnx(torch_model, model)
    mapping = {"0": "encoder.proj", "2": "head"}
    assert match_modules(torch_model, model, mapping) == mapping
    torch_to_nnx(torch_model, model, mapping=mapping)
    np.testing.assert_array_equal(model.head.kernel.get_value(), torch_model[2].weight.detach().numpy().T)
    with pytest.raises(ValueError, match=r"`mapping` \(=\{'fc': 'head'\}\) names torch modules the model does not have: \['fc'\]"):
        torch_to_nnx(torch_model, model, mapping={"fc": "head"})


def test_a_module_under_one_more_name_pairs_when_it_is_the_only_one():
    class Net(nnx.Module):
        def __init__(self, rngs, twice=False):
            self.rnn = nnx.RNN(nnx.GRUCell(3, 2, rngs=rngs))
            self.other = nnx.RNN(nnx.GRUCell(3, 2, rngs=rngs)) if twice else None

    torch_model = torch.nn.Module()
    torch_model.cell = torch.nn.GRUCell(3, 2, bias=False)
    assert match_modules(torch_model, Net(nnx.Rngs(0))) == {"cell": "rnn.cell"}
    assert match_modules(torch_model, Net(nnx.Rngs(0), twice=True)) == {}  # ambiguous: left unpaired
    # An index names no module by itself: torch `0` does not pair with nnx `encoder.0`.
    nested = nnx.Dict({"encoder": nnx.List([nnx.Linear(5, 7, rngs=nnx.Rngs(0))])})
    assert match_modules(torch.nn.Sequential(torch.nn.Linear(5, 7)), nested) == {}


def test_gru_cells_take_the_map_the_nnx_cell_needs():
    import jax_layers

    torch.manual_seed(0)
    torch_cell = torch.nn.GRUCell(4, 3)
    ours = jax_layers.GRUCell(4, 3, use_recurrent_bias=True, rngs=nnx.Rngs(0))
    torch_to_nnx(torch_cell, ours)  # torch's `bias_hh` goes to `dense_h.bias` as it is
    np.testing.assert_array_equal(ours.dense_h.bias.get_value(), torch_cell.bias_hh.detach().numpy())
    with pytest.raises(ConversionError, match="`bias_hh` n block"):
        torch_to_nnx(torch_cell, nnx.GRUCell(4, 3, rngs=nnx.Rngs(0)))


def test_nnx_variables_other_than_parameters_are_accounted_for():
    torch.manual_seed(0)
    torch_bn, flax_bn = torch.nn.BatchNorm2d(3), nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    torch_bn.running_mean.uniform_(-1, 1)
    torch_to_nnx(torch_bn, flax_bn)
    np.testing.assert_array_equal(flax_bn.mean.get_value(), torch_bn.running_mean.numpy())
    flax_bn.var.set_value(jnp.full((3,), 2.0, jnp.float32))
    nnx_to_torch(flax_bn, torch_bn)
    assert torch.equal(torch_bn.running_var, torch.full((3,), 2.0))
    assert int(torch_bn.num_batches_tracked) == 0  # torch's own: Flax keeps no count
