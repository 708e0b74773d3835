"""The drop-in audit: every public layer against the built-in it replaces.

Signatures (`inspect.signature`: names, order, defaults, keyword-only) of torch_layers'
functionals against `torch.nn.functional`, its modules against `torch.nn` (constructor and
`forward`) and jax_layers' modules against `flax.nnx` (constructor and `__call__`); and
PyTorch's own sample inputs (OpInfo `sample_inputs`) for every functional that mirrors a
`torch.nn.functional` op, through ours and the built-in in float64 on CPU: values and
gradients agree. Every difference, and every sample ours refuses, is listed with its reason in
`tests/dropin_table.py`.
"""

from __future__ import annotations

import functools
import inspect
import re
import types

import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import jax_layers
import torch_layers
from dropin_table import ARGUMENT_ORDER, NO_BUILTIN, OUT_OF_SCOPE, REFUSED_SAMPLES, SIGNATURE_OF, SIGNATURES

BUILTINS = {"torch.nn.functional": F, "torch.nn": torch.nn, "flax.nnx": nnx}
METHODS = {"torch.nn": ("__init__", "forward"), "flax.nnx": ("__init__", "__call__")}


def _public(package, kind):
    return sorted(n for n in dir(package) if not n.startswith("_") and isinstance(getattr(package, n), kind))


OURS = {
    "torch.nn.functional": (torch_layers, _public(torch_layers, types.FunctionType)),
    "torch.nn": (torch_layers, _public(torch_layers, type)),
    "flax.nnx": (jax_layers, _public(jax_layers, type)),
}
PAIRS = [(where, name) for where, (_, names) in OURS.items() for name in names if hasattr(BUILTINS[where], name)]


def _signature(fn):
    """`inspect.signature`, or for a C builtin the one its docstring opens with."""
    try:
        return inspect.signature(fn)
    except ValueError:
        head = re.match(r"\s*\w+\((.*?)\)\s*->", fn.__doc__ or "", re.S)
        if head is None:
            raise
        scope = {}
        exec(f"def f({head.group(1)}): pass", scope)
        return inspect.signature(scope["f"])


def _same_default(a, b) -> bool:
    """Equal defaults; two functions made by one factory (flax's initialisers) are equal when
    their code and the values they close over are."""
    if a is b:
        return True
    if isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType):
        cells = [(x.cell_contents, y.cell_contents) for x, y in zip(a.__closure__ or (), b.__closure__ or ())]
        return (a.__code__ is b.__code__ and len(a.__closure__ or ()) == len(b.__closure__ or ())
                and all(_same_default(x, y) for x, y in cells))
    try:
        return bool(a == b)
    except Exception:
        return False


def differences(ours, builtin) -> dict[str, str]:
    """`{argument: how it differs}` between two signatures (`self` left out)."""
    a = {n: p for n, p in _signature(ours).parameters.items() if n != "self"}
    b = {n: p for n, p in _signature(builtin).parameters.items() if n != "self"}
    out = {n: "not taken" for n in b if n not in a} | {n: "an addition" for n in a if n not in b}
    for i, (n, pb) in enumerate(b.items()):
        pa = a.get(n)
        if pa is None:
            continue
        if pa.kind != pb.kind:
            out[n] = f"{pa.kind.description}, the built-in's is {pb.kind.description}"
        elif not _same_default(pa.default, pb.default):
            out[n] = f"default {pa.default!r}, the built-in's is {pb.default!r}"
        elif pb.kind is not pb.KEYWORD_ONLY and list(a).index(n) != i:
            out[n] = f"at position {list(a).index(n)}, the built-in's at {i}"
    return out


def _members(where, name):
    """`(label, ours, built-in)` for each signature of a pair."""
    ours, builtin = getattr(OURS[where][0], name), getattr(BUILTINS[where], name)
    if where == "torch.nn.functional":
        return [(name, ours, getattr(F, SIGNATURE_OF.get(name, name)))]
    return [(f"{name}.{m}", getattr(ours, m), getattr(builtin, m)) for m in METHODS[where]]


@pytest.mark.parametrize("where,name", PAIRS, ids=[f"{w}.{n}" for w, n in PAIRS])
def test_signature_matches_or_is_listed(where, name):
    for label, ours, builtin in _members(where, name):
        found = differences(ours, builtin)
        listed = SIGNATURES.get((where, label), {})
        unlisted = {k: v for k, v in found.items() if k not in listed}
        stale = sorted(set(listed) - set(found))
        assert not unlisted, f"{where}.{label}: differences not listed in tests/dropin_table.py: {unlisted}"
        assert not stale, f"{where}.{label}: listed in tests/dropin_table.py but no longer different: {stale}"


def test_every_listed_signature_is_a_public_pair():
    labels = {(w, label) for w, n in PAIRS for label, _, _ in _members(w, n)}
    assert not set(SIGNATURES) - labels, f"tests/dropin_table.py lists unknown signatures: {set(SIGNATURES) - labels}"


@pytest.mark.parametrize("where", list(OURS))
def test_layers_without_a_builtin_are_listed(where):
    alone = {n for n in OURS[where][1] if not hasattr(BUILTINS[where], n)}
    assert alone == set(NO_BUILTIN[where]), (
        f"public layers with no {where} counterpart: {sorted(alone)}; listed: {sorted(NO_BUILTIN[where])}"
    )


# -- OpInfo samples ---------------------------------------------------------------------------

MIRRORED = [n for n in OURS["torch.nn.functional"][1] if hasattr(F, n)]


@functools.cache
def _op_db():
    from torch.testing._internal.common_methods_invocations import op_db  # needs expecttest

    return op_db


def _opinfos(name):
    return [o for o in _op_db() if o.name in (f"nn.functional.{name}", name)]


def _copy(sample):
    """`(args, kwargs)` of fresh tensors (leaves where the sample's require grad): each side
    gets its own, so that one side's in-place updates (batch_norm's running statistics) leave
    the other's untouched and can be compared."""
    fresh = lambda a: a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a  # noqa: E731
    return [fresh(a) for a in (sample.input, *sample.args)], {k: fresh(v) for k, v in sample.kwargs.items()}


def _run(fn, sample):
    """`(outputs and every tensor argument after the call, leaves)` of one side."""
    args, kwargs = _copy(sample)
    torch.default_generator.manual_seed(0)  # the same dropout draws on both sides
    out = fn(*args, **kwargs)
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    return (*(out if isinstance(out, tuple) else (out,)), *tensors), [t for t in tensors if t.requires_grad]


def _grads(outs, leaves):
    """Gradients of `sum(out * ct)` over the outputs, `ct` seeded per output."""
    pairs = [(o, torch.randn(o.shape, dtype=o.dtype, generator=torch.Generator().manual_seed(i)))
             for i, o in enumerate(outs) if isinstance(o, torch.Tensor) and o.requires_grad and not o.is_leaf]
    if not pairs or not leaves:
        return []
    return torch.autograd.grad([o for o, _ in pairs], leaves, [c for _, c in pairs], allow_unused=True)


def _assert_close(x, y):
    # torch.allclose first: assert_close's checks cost more than the samples' arithmetic.
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape
            and x.dtype == y.dtype and torch.allclose(x, y, rtol=1e-10, atol=1e-10, equal_nan=True)):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10, equal_nan=True)


def _describe(sample):
    show = lambda a: tuple(a.shape) if isinstance(a, torch.Tensor) else a  # noqa: E731
    return f"{[show(a) for a in (sample.input, *sample.args)]} {{{', '.join(f'{k}={show(v)}' for k, v in sample.kwargs.items())}}}"


def _refusal(name, sample):
    return next((why for what, why, matches in REFUSED_SAMPLES.get(name, []) if matches(sample)), None)


@pytest.fixture
def one_thread():
    """One intra-op thread: the samples are tiny, and on a busy 2-core machine the thread pool's
    handoffs cost far more than their arithmetic (see docs/bench.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The built-in's own warning on some conv samples (padding="same" with an even kernel).
@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", MIRRORED)
def test_opinfo_samples_match_builtin(name):
    infos = _opinfos(name)
    assert infos, f"no OpInfo for {name}"
    wrap = ARGUMENT_ORDER.get(name, lambda f: f)
    ours, builtin = wrap(getattr(torch_layers, name)), wrap(getattr(F, name))
    problems, refused = [], 0
    for info in infos:
        for i, sample in enumerate(info.sample_inputs("cpu", torch.float64, requires_grad=True)):
            where = f"{info.name}{'.' + info.variant_test_name if info.variant_test_name else ''} sample {i} {_describe(sample)}"
            reason = _refusal(name, sample)
            expected, leaves_b = _run(builtin, sample)
            try:
                got, leaves_a = _run(ours, sample)
            except (ValueError, TypeError) as e:
                if reason is None:
                    problems.append(f"{where}: refused ({e}) and not listed in tests/dropin_table.py")
                refused += 1
                continue
            if reason is not None:
                problems.append(f"{where}: listed as refused ({reason}) but taken")
                continue
            pairs = [("value", got, expected), ("gradient", _grads(got, leaves_a), _grads(expected, leaves_b))]
            for kind, a, b in pairs:
                try:
                    for x, y in zip(a, b, strict=True):
                        _assert_close(x, y)
                except (AssertionError, ValueError) as e:
                    problems.append(f"{where}: {kind}s differ: {str(e).splitlines()[:3]}")
    assert not problems, "\n".join(problems)


def test_out_of_scope_arguments_name_the_builtin_and_readme_lists_them():
    with open("README.md") as f:
        readme = f.read()
    section = readme[readme.index("## What the drop-ins accept"):]
    section = section[: section.index("\n## ", 1)]
    for argument, builtin, call in OUT_OF_SCOPE():
        with pytest.raises(ValueError, match=rf"`{argument}`.*not supported.*{re.escape(builtin)}"):
            call()
        assert re.search(rf"\b{argument}\b", section) and builtin in section, f"README's drop-in section lacks `{argument}` ({builtin})"
