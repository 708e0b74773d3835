"""The user-facing modules are checked as users run them: a module that computes the wrong
thing, or leaves a parameter out of the graph, fails the module checks on its side."""

from __future__ import annotations

from crosscheck import registry
from crosscheck.session import run


def _failures(case):
    report = run(cases=[case], dtypes=["float64"], trials=2, shapes=1)
    return {(r.check, r.compared) for r in report.failures}, report


def test_a_jax_module_with_a_wrong_forward_fails_the_module_checks_only():
    import jax_layers

    class Doubled(jax_layers.Linear):
        def __call__(self, x):
            return 2 * super().__call__(x)

    case = registry.get("linear")
    build = case.jax_module

    def jax_module(dtype):
        m = build(dtype)
        m.__class__ = Doubled
        return m

    failed, report = _failures(case.replace(jax_module=jax_module))
    assert failed == {
        ("forward", "torch vs jax, modules"),
        ("grad-module", "torch vs jax"),
    }, [r.message for r in report.failures]
    assert "jax = 2 x torch" in next(r.message for r in report.failures if r.check == "grad-module")


def test_a_torch_module_that_drops_its_bias_fails_with_the_missing_gradient():
    import torch

    case = registry.get("linear")
    build = case.torch_module

    def torch_module(dtype, device):
        m = build(dtype, device)
        m.forward = lambda x: torch.nn.functional.linear(x, m.weight)
        return m

    failed, report = _failures(case.replace(torch_module=torch_module))
    assert ("grad-shape", "torch module .grad") in failed
    message = next(r.message for r in report.failures if r.compared == "torch module .grad")
    assert "grad of bias: missing" in message
