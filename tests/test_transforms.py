"""Transforms: every case gives the same numbers under each framework's transforms.

JAX: eager vs `jit`, batched `vmap` vs one example at a time, `grad` inside `jit`.
torch: plain `loss.backward()` vs `torch.func.vjp`, `torch.func.grad` and `vmap` of it, and
`torch.compile` of the module vs eager. Cases that opt out (`Case.transforms = False`) say why.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crosscheck import adapters, registry
from crosscheck.inputs import Inputs

CASES = [pytest.param(c, id=c.name) for c in registry.all_cases() if c.transforms]
TRIALS = 2


def _close(a, b, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.sqrt(np.mean(np.square(b)))) if b.size else 0.0, 1e-300)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@pytest.fixture(scope="module")
def sides():
    return adapters.get("torch"), adapters.get("jax")


def _inputs(case, sides):
    return Inputs.draw(case, "float64", [0], TRIALS, sides[0])


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@pytest.mark.parametrize("case", CASES)
def test_jax_jit_vmap_and_grad_in_jit(case, sides):
    import jax
    import jax.numpy as jnp

    view = _inputs(case, sides).for_jax(sides[1])
    args, cts = view.args, view.cts
    diff = [i for i, t in enumerate(case.tensors) if t.differentiable]

    def loss(p, others, ct):
        a = {**others, **dict(zip(diff, p))}
        outs = _as_tuple(case.jax_fn(*(a[i] for i in range(len(a)))))
        return sum(jnp.sum(o * c) for o, c in zip(outs, ct))

    batched = jax.jit(jax.vmap(lambda *a: _as_tuple(case.jax_fn(*a))))(*args)
    grads_vmap = jax.jit(jax.vmap(jax.grad(loss)))(
        tuple(args[i] for i in diff), {i: a for i, a in enumerate(args) if i not in diff}, tuple(cts)
    )
    for k in range(TRIALS):
        one = [a[k] for a in args]
        p, others, ct = tuple(one[i] for i in diff), {i: a for i, a in enumerate(one) if i not in diff}, tuple(c[k] for c in cts)
        for j, (e, b) in enumerate(zip(_as_tuple(case.jax_fn(*one)), batched)):
            _close(b[k], e, f"output {j}: jit(vmap) vs eager, trial {k}")
        eager, jitted = jax.grad(loss)(p, others, ct), jax.jit(jax.grad(loss))(p, others, ct)
        for j, (e, g, v) in enumerate(zip(eager, jitted, grads_vmap)):
            _close(g, e, f"grad {j}: grad in jit vs eager")
            _close(v[k], e, f"grad {j}: vmap(grad) vs grad, trial {k}")


@pytest.mark.parametrize("case", CASES)
def test_torch_func_transforms_match_plain_autograd(case, sides):
    view = _inputs(case, sides).for_torch(sides[0])
    args, cts = view.args, view.cts
    diff = [i for i, t in enumerate(case.tensors) if t.differentiable]

    def call(p, others):
        a = {**others, **dict(zip(diff, p))}
        return _as_tuple(case.torch_fn(*(a[i] for i in range(len(a)))))

    def loss(*p, others, ct):
        return sum((o * c).sum() for o, c in zip(call(p, others), ct))

    for k in range(TRIALS):
        one = [a[k] for a in args]
        ct = tuple(c[k] for c in cts)
        others = {i: a for i, a in enumerate(one) if i not in diff}
        leaves = [one[i].detach().clone().requires_grad_() for i in diff]
        loss(*leaves, others=others, ct=ct).backward()
        plain = [x.grad for x in leaves]
        _, vjp_fn = torch.func.vjp(lambda *p: call(p, others), *(one[i] for i in diff))
        func_grad = torch.func.grad(lambda *p: loss(*p, others=others, ct=ct), argnums=tuple(range(len(diff))))(
            *(one[i] for i in diff)
        )
        for j, (a, b, c) in enumerate(zip(plain, vjp_fn(ct), func_grad)):
            _close(b, a, f"grad {j}: torch.func.vjp vs loss.backward(), trial {k}")
            _close(c, a, f"grad {j}: torch.func.grad vs loss.backward(), trial {k}")


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0].torch_module is not None])
def test_torch_compile_of_the_module_matches_eager(case, sides):
    view = _inputs(case, sides).for_torch(sides[0])
    args, cts = view.args, view.cts
    n_in = len(case.inputs)
    state = {t.name: a[0] for t, a in zip(case.params, args[n_in:])}
    results = []
    for compiled in (False, True):
        module = case.torch_module(torch.float64, torch.device("cpu"))
        module.load_state_dict(state, strict=False)
        # aot_eager runs AOTAutograd (where autograd.Functions are traced) without a C++
        # toolchain, which keeps this fast enough to run for every case.
        fn = torch.compile(module, backend="aot_eager") if compiled else module
        xs = [a[0].detach().clone().requires_grad_(t.differentiable) for t, a in zip(case.inputs, args)]
        # Inputs marked `keyword` by name, as the harness passes them (`module(q, k, v, dropout_mask=m)`).
        named = {t.name: x for t, x in zip(case.inputs, xs) if t.keyword}
        outs = _as_tuple(fn(*(x for t, x in zip(case.inputs, xs) if not t.keyword), **named))
        sum((o * c[0]).sum() for o, c in zip(outs, cts)).backward()
        grads = [x.grad for x in xs if x.requires_grad] + [p.grad for p in module.parameters()]
        results.append(([o.detach() for o in outs], grads))
    (eager_out, eager_grads), (comp_out, comp_grads) = results
    for j, (a, b) in enumerate(zip(comp_out, eager_out)):
        _close(a, b, f"output {j}: torch.compile vs eager")
    for j, (a, b) in enumerate(zip(comp_grads, eager_grads)):
        assert (a is None) == (b is None), f"grad {j}: None on one side only"
        if a is not None:
            _close(a, b, f"grad {j}: torch.compile vs eager")


# Inductor's own imports use deprecated torch.jit APIs (torch 2.13); not ours.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_compile_inductor_linear():
    """The default backend too, on one layer (inductor compiles C++, seconds per graph)."""
    import torch_layers

    torch.manual_seed(0)
    layer = torch_layers.Linear(7, 5, dtype=torch.float64)
    x = torch.randn(4, 1, 7, dtype=torch.float64, requires_grad=True)
    eager = layer(x)
    eager.sum().backward()
    gx, gw = x.grad.clone(), layer.weight.grad.clone()
    x.grad = layer.weight.grad = layer.bias.grad = None
    out = torch.compile(layer)(x)
    out.sum().backward()
    _close(out.detach(), eager.detach(), "output")
    _close(x.grad, gx, "grad of input")
    _close(layer.weight.grad, gw, "grad of weight")
