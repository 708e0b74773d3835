"""The PyTorch side: numpy in, numpy out; trials batched with `torch.func.vmap`."""

from __future__ import annotations

import numpy as np
import torch

from ..diagnose import shape_hint
from . import call, vjp_result

framework_name = "torch"

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class TorchAdapter:
    framework_name = "torch"

    def __init__(self):
        self.device = torch.device("cpu")

    # -- devices -------------------------------------------------------------------------
    @staticmethod
    def has_gpu() -> bool:
        return torch.cuda.is_available()

    def set_device(self, device: str) -> None:
        self.device = torch.device("cuda" if device == "cuda" else "cpu")

    @staticmethod
    def version() -> str:
        return torch.__version__

    @staticmethod
    def torch_dtype(dtype: str):
        return DTYPES[dtype]

    # -- arrays --------------------------------------------------------------------------
    def from_numpy(self, a: np.ndarray, kind: str, dtype: str, contiguous: bool = True) -> torch.Tensor:
        """A tensor on the device; `contiguous=False` gives the same values in a strided view
        (axes stored in reverse order), as a transposed input would arrive."""
        if kind == "float":
            # Values are already rounded to `dtype`, so this cast is exact.
            t = torch.from_numpy(np.asarray(a, dtype=np.float64, order="C")).to(self.device, DTYPES[dtype])
        else:
            t = torch.from_numpy(np.asarray(a, order="C")).to(self.device)
        if not contiguous:
            rev = tuple(reversed(range(t.ndim)))
            t = t.permute(rev).contiguous().permute(rev)
        return t

    @staticmethod
    def to_numpy(t) -> np.ndarray:
        t = t.detach().cpu()
        return (t.to(torch.float64) if t.is_floating_point() else t).numpy()

    @staticmethod
    def dtype_name(t) -> str:
        return str(t.dtype).removeprefix("torch.")

    # -- programs ------------------------------------------------------------------------
    def forward(self, fn, args: list) -> tuple:
        """`fn` over the trial axis of every arg, without gradients."""
        with torch.no_grad():
            outs = torch.func.vmap(lambda *a: _as_tuple(fn(*a)))(*args)
        return tuple(self.to_numpy(o) for o in outs)

    @staticmethod
    def output_shapes(fn, args: list) -> list[tuple[int, ...]]:
        """Shapes of `fn`'s outputs on one trial, run eagerly: not under `vmap`, which some
        references cannot take (a weighted cross entropy calls `masked_select`)."""
        with torch.no_grad():
            return [tuple(o.shape) for o in _as_tuple(fn(*args))]

    def vjp(self, fn, args: list, diff: list[bool], cts: list):
        """Outputs and VJPs of `fn` over trials; grads are None where `diff` is False.

        Returns `(outs, grads, meta)`; `meta[i]` is the raw `(shape, dtype)` of grad i.
        """
        idx = [i for i, d in enumerate(diff) if d]

        def per_trial(primals, others, cts):
            def f(*p):
                a = {**others, **dict(zip(idx, p))}
                return _as_tuple(fn(*(a[i] for i in range(len(a)))))

            out, vjp_fn = torch.func.vjp(f, *primals)
            return out, vjp_fn(tuple(cts))

        others = {i: a for i, (a, d) in enumerate(zip(args, diff)) if not d}
        outs, grads = torch.func.vmap(per_trial)(tuple(args[i] for i in idx), others, tuple(cts))
        return vjp_result(self, len(args), idx, outs, grads)

    def hvp(self, fn, args: list, diff: list[bool], cts: list, vs: list):
        """Hessian-vector products of `L = sum(ct * fn(args))` along `vs`, by double backward."""
        idx = [i for i, d in enumerate(diff) if d]

        def per_trial(primals, others, cts, vs):
            def loss(*p):
                a = {**others, **dict(zip(idx, p))}
                outs = _as_tuple(fn(*(a[i] for i in range(len(a)))))
                return sum((o * c).sum() for o, c in zip(outs, cts))

            def grad_dot_v(*p):
                g = torch.func.grad(loss, argnums=tuple(range(len(p))))(*p)
                return sum((gi * vi).sum() for gi, vi in zip(g, vs))

            return torch.func.grad(grad_dot_v, argnums=tuple(range(len(primals))))(*primals)

        others = {i: a for i, (a, d) in enumerate(zip(args, diff)) if not d}
        hv = torch.func.vmap(per_trial)(tuple(args[i] for i in idx), others, tuple(cts), tuple(vs))
        full = [None] * len(args)
        for i, h in zip(idx, hv):
            full[i] = self.to_numpy(h)
        return full

    def module_grads(self, module, inputs: list, in_diff: list[bool], params: dict, cts: list, keywords=None):
        """One trial through `module(*inputs)` and `loss.backward()`, as a user runs it.

        `params` holds parameters and buffers, by `state_dict` name; `keywords[i]` names the
        keyword that input i is passed by (None: by position). Returns `(outs, input_grads,
        param_grads, meta)` with `meta[name] = (shape, dtype)`, for parameters only.
        """
        state = module.state_dict()
        missing = [n for n in params if n not in state]
        if missing:
            raise ValueError(f"torch module {type(module).__name__} has no parameter(s) {missing}; it has {list(state)}")
        module.load_state_dict(params, strict=False)
        xs = [x.detach().clone().requires_grad_(d) for x, d in zip(inputs, in_diff)]
        outs = _as_tuple(call(module, xs, keywords))
        loss = sum((o * c).sum() for o, c in zip(outs, cts))
        loss.backward()
        named = dict(module.named_parameters())
        raw = {i: x.grad for i, (x, d) in enumerate(zip(xs, in_diff)) if d}
        raw.update({name: named[name].grad for name in params if name in named})
        meta = {k: None if g is None else (tuple(g.shape), self.dtype_name(g)) for k, g in raw.items()}
        grads = {k: None if g is None else self.to_numpy(g)[None] for k, g in raw.items()}
        return tuple(self.to_numpy(o)[None] for o in outs), grads, meta


class _RecordingContext:
    """Stands in for autograd's ctx so that `backward` can be called directly."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()
        self.materialize_grads = True

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def save_for_forward(self, *tensors):
        pass

    def mark_non_differentiable(self, *args):
        pass

    def mark_dirty(self, *args):
        pass

    def set_materialize_grads(self, value):
        self.materialize_grads = value


def _custom_functions() -> list[type]:
    found, todo = [], [torch.autograd.Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not sub.__module__.startswith("torch."):
                found.append(sub)
    return found


def record_functions(fn, args) -> list:
    """Every `(Function class, inputs)` that `fn(*args)` applies, outside torch's own Functions.

    Hooks each class's `setup_context` (looked up per call), so it sees Functions however
    they are reached, `Fn.apply` bound at import time included.
    """
    classes = [c for c in _custom_functions() if c.setup_context is not torch.autograd.Function.setup_context]
    originals = {c: (c.__dict__.get("setup_context"), c.setup_context) for c in classes}
    calls = []

    def hook(cls, original):
        def setup_context(ctx, inputs, output):
            calls.append((cls, tuple(inputs)))
            return original(ctx, inputs, output)

        return staticmethod(setup_context)

    for c in classes:
        c.setup_context = hook(c, originals[c][1])
    try:
        fn(*args)
    finally:
        for c, (own, _) in originals.items():
            if own is None:
                del c.setup_context
            else:
                c.setup_context = own
    return calls


def _raw_backward(cls, args, needs, ct_draw):
    ctx = _RecordingContext(needs)
    with torch.no_grad():
        if cls.setup_context is not torch.autograd.Function.setup_context:
            out = cls.forward(*args)
            cls.setup_context(ctx, args, out)
        else:
            out = cls.forward(ctx, *args)
        cts = [ct_draw(o) if o.is_floating_point() else None for o in _as_tuple(out)]
        return _as_tuple(cls.backward(ctx, *cts))


def backward_contract(cls, args, rng: np.random.Generator, rtol: float, atol: float) -> list[str]:
    """Call `cls.backward` directly and list how its raw output breaks the contract.

    Autograd silently sums a gradient that is broadcastable to its input, so a bias gradient
    of shape `(N, out)` passes every check that reads `.grad`; this one sees it. Then each
    differentiable input alone gets `needs_input_grad`, so a branch that skips or miscomputes
    a gradient when the others are not needed is exercised too.
    """
    needs = tuple(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
    seed = int(rng.integers(2**32))

    def run(pattern):
        draw = np.random.default_rng(seed)  # the same cotangents for every pattern
        return _raw_backward(
            cls, args, pattern, lambda o: torch.from_numpy(draw.standard_normal(tuple(o.shape))).to(o.device, o.dtype)
        )

    name = cls.__name__
    grads = run(needs)
    if len(grads) != len(args):
        return [f"{name}.backward returned {len(grads)} gradients for {len(args)} forward inputs"]
    problems = []
    for i, (a, g, need) in enumerate(zip(args, grads, needs)):
        if g is None or not need:
            if g is not None and not isinstance(a, torch.Tensor):
                problems.append(f"{name}.backward returned a gradient at position {i} for a non-tensor input")
            continue
        if tuple(g.shape) != tuple(a.shape) or g.dtype != a.dtype:
            problems.append(
                f"{name}.backward gradient {i}: shape {tuple(g.shape)} {g.dtype}, "
                f"input has shape {tuple(a.shape)} {a.dtype}"
            )
            hint = shape_hint(tuple(a.shape), tuple(g.shape))
            if hint:
                problems.append(f"Hint: {hint}")
    if problems or sum(needs) < 2:
        return problems
    for i in [i for i, n in enumerate(needs) if n]:
        alone = run(tuple(j == i for j in range(len(args))))
        if len(alone) != len(args):
            problems.append(f"{name}.backward returned {len(alone)} gradients when only input {i} needs one")
        elif alone[i] is None and grads[i] is not None:
            problems.append(f"{name}.backward returned None for gradient {i} when only input {i} needs one")
        elif alone[i] is not None and grads[i] is not None:
            a, b = alone[i].double(), grads[i].double()
            if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=atol * float(b.square().mean().sqrt())):
                err = (a - b).abs().max().item() if a.shape == b.shape else float("inf")
                problems.append(
                    f"{name}.backward gradient {i} differs when only input {i} needs one "
                    f"(greatest absolute difference {err:.3g})"
                )
    return problems
