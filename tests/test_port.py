"""Whole models ported both ways and checked: the four example models, from the built-in layers
and from ours, in four dtypes; a round trip gives back the state_dict bit for bit; the check
fails where the models differ; the `port` command."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from crosscheck.cli import main
from crosscheck.convert import nnx_to_torch, torch_to_nnx
from crosscheck.models import EXAMPLES, TorchMLP
from crosscheck.port import check_port
from crosscheck.registry import DTYPES
from crosscheck.report import format_failures


def _stats(torch_model=None, nnx_model=None, seed=0):
    """Running statistics drawn away from their initial 0 and 1, so that porting them shows."""
    rng = np.random.default_rng(seed)
    if torch_model is not None:
        for name, buf in torch_model.named_buffers():
            if buf.is_floating_point():
                buf.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, tuple(buf.shape))))
    if nnx_model is not None:
        for _, node in nnx.iter_graph(nnx_model):
            if isinstance(node, nnx.BatchStat):
                node.set_value(jnp.asarray(rng.uniform(0.5, 1.5, node.shape), node.dtype))


def _check(ex, torch_model, nnx_model):
    report = check_port(torch_model, nnx_model, ex.inputs, out_layouts=ex.out_layouts, name=ex.name)
    assert report.passed, format_failures(report)
    # Every dtype ran, and each compared every torch parameter's gradient.
    params = {f"grad of {n}" for n, _ in torch_model.named_parameters()}
    for dtype in DTYPES:
        compared = {r.tensor for r in report.results if r.dtype == dtype and r.check == "grad"}
        assert params <= compared, f"{dtype}: no gradient check for {sorted(params - compared)}"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_model_ports_both_ways_and_agrees_in_four_dtypes(name):
    ex = EXAMPLES[name]
    torch.manual_seed(0)
    torch_model, nnx_model = ex.torch_model(), ex.nnx_model(nnx.Rngs(1))
    _stats(torch_model)
    torch_to_nnx(torch_model, nnx_model)
    _check(ex, torch_model, nnx_model)
    # The other way: the nnx model's own weights into a torch model.
    torch.manual_seed(2)
    source, target = ex.nnx_model(nnx.Rngs(3)), ex.torch_model()
    _stats(nnx_model=source, seed=1)
    nnx_to_torch(source, target)
    _check(ex, target, source)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_torch_to_nnx_to_torch_gives_back_the_state_dict_bit_for_bit(name):
    ex = EXAMPLES[name]
    torch.manual_seed(4)
    torch_model, nnx_model, back = ex.torch_model(), ex.nnx_model(nnx.Rngs(5)), ex.torch_model()
    _stats(torch_model)
    torch_to_nnx(torch_model, nnx_model)
    nnx_to_torch(nnx_model, back)
    want = torch_model.state_dict()
    if name == "lm":
        # flax.nnx.LSTMCell has one bias per gate: torch's two come back as 0 and their sum,
        # rounded once into the float32 Flax bias.
        b_ih, b_hh = want["cell.bias_ih"], want["cell.bias_hh"]
        want = {**want, "cell.bias_ih": torch.zeros_like(b_ih), "cell.bias_hh": (b_ih.double() + b_hh.double()).float()}
    got = back.state_dict()
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def test_the_check_fails_on_a_weight_the_port_did_not_carry():
    ex = EXAMPLES["mlp"]
    torch_model, nnx_model = ex.torch_model(), ex.nnx_model(nnx.Rngs(0))
    torch_to_nnx(torch_model, nnx_model)
    kernel = nnx_model.layers[2].kernel
    kernel.set_value(kernel.get_value().at[6, 2].add(1e-3))
    report = check_port(torch_model, nnx_model, ex.inputs, dtypes=["float32"], name="mlp")
    # The values and gradients are computed on weights ported afresh, so the weight that the
    # given model holds wrongly fails alone, by name.
    assert {(r.check, r.tensor) for r in report.failures} == {("weights", "layers.2.kernel")}
    message = format_failures(report)
    assert "FAILED mlp / float32 / cpu / weights / layers.2.kernel (torch vs jax, as stored)" in message
    assert "Mismatched elements: 1 / 21 (4.8%)" in message
    assert "Reproduce: crosscheck.port.check_port(torch_model, nnx_model, inputs, dtypes=['float32'], seed=0, trials=1)" in message


def test_the_check_fails_where_the_models_compute_different_functions():
    torch_model = TorchMLP()
    nnx_model = nnx.Sequential(nnx.Linear(5, 7, rngs=nnx.Rngs(0)), nnx.sigmoid, nnx.Linear(7, 3, rngs=nnx.Rngs(0)))
    torch_to_nnx(torch_model, nnx_model)
    report = check_port(torch_model, nnx_model, EXAMPLES["mlp"].inputs, dtypes=["float64", "bfloat16"])
    failed = {(r.dtype, r.check, r.compared) for r in report.failures}
    assert ("float64", "forward", "torch vs jax") in failed
    assert ("bfloat16", "forward", "float64 oracle vs jax") in failed
    assert ("bfloat16", "forward", "float64 oracle vs torch") not in failed  # torch is the oracle's model
    assert not any(r.check == "weights" for r in report.failures)


def test_the_check_fails_on_a_wrong_gradient_that_leaves_the_values_right(monkeypatch):
    import importlib

    import jax_layers
    import torch_layers
    from crosscheck.mutants import all_mutants

    (zero_kernel_grad,) = [m for m in all_mutants() if m.name == "linear/kernel-grad-zero"]
    # The module by path: the package's `linear` is the function of that name.
    # The mutant takes `(x, kernel, bias)`; the module also passes flax.nnx.Linear's product options.
    patched = lambda x, kernel, bias=None, **options: zero_kernel_grad.fn(x, kernel, bias)  # noqa: E731
    monkeypatch.setattr(importlib.import_module("jax_layers.linear"), "linear", patched)
    # Sizes of their own: a model compiled before, unpatched, would be run from jit's cache.
    torch.manual_seed(0)
    torch_model = torch.nn.Sequential(torch_layers.Linear(2, 5), torch_layers.Tanh(), torch_layers.Linear(5, 4))
    rngs = nnx.Rngs(0)
    nnx_model = nnx.Sequential(jax_layers.Linear(2, 5, rngs=rngs), jax_layers.tanh, jax_layers.Linear(5, 4, rngs=rngs))
    torch_to_nnx(torch_model, nnx_model)
    report = check_port(torch_model, nnx_model, [(3, 1, 2)], dtypes=["float64"])
    assert {(r.check, r.tensor) for r in report.failures} == {("grad", "grad of 0.weight"), ("grad", "grad of 2.weight")}


def test_port_command_ports_and_checks(capsys):
    argv = ["port", "crosscheck.models:TorchMLP", "crosscheck.models:NnxMLP", "--input", "4,1,5", "--dtype", "float32"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "TorchMLP vs NnxMLP  float32" in out and " 0 failed" in out


def test_port_command_exits_1_naming_what_does_not_port(capsys):
    argv = ["port", "crosscheck.models:TorchMLP", "crosscheck.models:NnxCNN", "--input", "4,1,5", "--dtype", "float32"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "crosscheck: the port failed: torch -> nnx" in err
    assert "torch `0.weight` (7, 5) has no counterpart in the nnx model: no nnx module at `0`" in err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--input", "4,x"], "`--input` (='4,x') must look like 4,1,5 or 3,4:int:7"),
        (["--input", "4,5", "--map", "fc"], "`--map` (='fc') must look like TORCH_PATH=NNX_PATH"),
        (["--input", "4,5", "--dtype", "float8"], "Unknown dtype: 'float8'"),
    ],
    ids=["input", "map", "dtype"],
)
def test_port_command_exits_2_on_bad_arguments(extra, words, capsys):
    assert main(["port", "crosscheck.models:TorchMLP", "crosscheck.models:NnxMLP", *extra]) == 2
    assert words in capsys.readouterr().err


def test_port_command_names_a_target_it_cannot_find(capsys):
    assert main(["port", "crosscheck.models:NoSuchModel", "crosscheck.models:NnxMLP", "--input", "4,5"]) == 2
    assert "`TORCH` (='crosscheck.models:NoSuchModel'): 'crosscheck.models' has no 'NoSuchModel'" in capsys.readouterr().err
