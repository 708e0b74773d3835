"""The checks that mean most on a GPU, and the environment they run in.

    python -m scripts.device_checks env --device cuda
    python -m scripts.device_checks checks --device cuda [--layer NAME]... [--results PATH]

Each check is a plain function of the device that runs the public `crosscheck.session.run`
and raises AssertionError when it finds a fault, so that `scripts/gpu_check.py` runs them on a
machine without pytest, and `tests/test_device_checks.py` runs them on CPU (and on a GPU where
both frameworks see one). A check returns a note of what it measured.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import time
import traceback

# The error of a float32 matmul over the scale of its exact result (|a| @ |b|), 256x512 @
# 512x128: 1.1e-7 in full float32 and 9.1e-5 with TF32's 10-bit mantissa (emulated on CPU).
FULL_FLOAT32 = 1e-5

# One case of each kind of array the harness moves: plain layers, convolution and pooling,
# modules with parameters, integer inputs (embedding), a recurrent cell, attention with a mask.
PLACEMENT_CASES = ["linear", "conv2d", "max_pool2d", "layer_norm", "embedding", "lstm_cell",
                   "scaled_dot_product_attention-bool-mask", "multihead-attention"]
# Convolution and pooling take cuDNN's paths on a GPU, in each precision.
CUDNN_CASES = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d"]


def _jax_platform(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def environment(device: str) -> list[str]:
    """Versions, devices and settings, one fact a line."""
    import flax
    import jax
    import jaxlib
    import ml_dtypes
    import numpy
    import torch

    from crosscheck.jobs import count

    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    lines = [
        f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} cores, {memory:.1f} GiB",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
        f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}, numpy {numpy.__version__}, "
        f"ml_dtypes {ml_dtypes.__version__}",
        f"torch sees {torch.cuda.device_count()} CUDA device(s)",
    ]
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        lines.append(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}")
    lines.append(f"jax's default backend: {jax.default_backend()}; devices: {jax.devices()}")
    lines.append(f"--jobs auto with --device {device}: {count('auto', device)} processes")
    for name in ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_FLAGS", "CROSSCHECK_JAX_CACHE"):
        lines.append(f"{name}={os.environ.get(name, '(unset)')}")
    return lines


def float32_errors(device: str) -> dict[str, float]:
    """The error of a float32 matmul and a float32 convolution on `device`, in torch and JAX,
    over the scale of the float64 result of the same inputs (|a| @ |b|, conv(|x|, |w|))."""
    import jax
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((256, 512), np.float32), rng.standard_normal((512, 128), np.float32)
    x, w = rng.standard_normal((2, 64, 12, 10), np.float32), rng.standard_normal((32, 64, 3, 3), np.float32)
    where = jax.devices(_jax_platform(device))[0]
    t, j = (lambda v: torch.from_numpy(v).to(device)), (lambda v: jax.device_put(v, where))

    def conv64(x, w):
        return torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double()).numpy()

    exact = {"matmul": (a.astype(np.float64) @ b, np.abs(a).astype(np.float64) @ np.abs(b)),
             "conv": (conv64(x, w), conv64(np.abs(x), np.abs(w)))}
    got = {
        ("torch", "matmul"): (t(a) @ t(b)).cpu().numpy(),
        ("jax", "matmul"): np.asarray(j(a) @ j(b)),
        ("torch", "conv"): torch.nn.functional.conv2d(t(x), t(w)).cpu().numpy(),
        ("jax", "conv"): np.asarray(jax.lax.conv_general_dilated(j(x), j(w), (1, 1), "VALID")),
    }
    return {f"{side} {op}": float(np.max(np.abs(v - exact[op][0]) / exact[op][1])) for (side, op), v in got.items()}


def _precision():
    import jax
    import torch

    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, jax.config.jax_default_matmul_precision


def _set_precision(matmul: bool, cudnn: bool, jax_precision) -> None:
    import jax
    import torch

    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    jax.config.update("jax_default_matmul_precision", jax_precision)


def tf32_off_during_a_run_and_restored(device: str, layers: list[str] | None = None) -> str:
    """With TF32 on in both frameworks beforehand, a run of `layers` holds both to full float32
    (the flags, and the error of float32 matmuls and convolutions in each case run) and turns
    TF32 back on after it."""
    from crosscheck.session import run

    saved, seen = _precision(), []
    _set_precision(True, True, "tensorfloat32")  # what a user with TF32 on has
    try:
        report = run(layers or ["linear"], ["float32"], device, trials=1,
                     on_case=lambda *_: seen.append((_precision(), float32_errors(device))))
        after, tf32 = _precision(), float32_errors(device)
    finally:
        _set_precision(*saved)
    assert seen, "the run called back for no case run"
    flags = {s for s, _ in seen}
    assert flags == {(False, False, "highest")}, f"TF32 settings during the run {flags}, want (False, False, 'highest')"
    worst = {k: max(errors[k] for _, errors in seen) for k in seen[0][1]}
    assert max(worst.values()) < FULL_FLOAT32, f"float32 error / scale during the run {worst}: over {FULL_FLOAT32}, as with TF32"
    assert after == (True, True, "tensorfloat32"), f"TF32 settings after the run {after}, want them back as they were"
    assert report.passed, f"{len(report.failures)} checks failed"
    return f"float32 error / scale during the run {_short(worst)}; with TF32 on again after it {_short(tf32)}"


def _short(errors: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + "}"


def every_array_on_the_device(device: str, layers: list[str] | None = None) -> str:
    """Every array that goes into the frameworks or comes out of them in a run of `layers`
    lies on `device`: torch tensors on it, JAX arrays on its platform's devices only."""
    import jax

    from crosscheck.adapters.jax_adapter import JaxAdapter
    from crosscheck.adapters.torch_adapter import TorchAdapter
    from crosscheck.report import format_failures
    from crosscheck.session import run

    seen = collections.Counter()

    def torch_array(t):
        seen["torch", t.device.type] += 1
        return t

    def jax_array(x):
        if isinstance(x, jax.Array):
            seen["jax", ",".join(sorted({d.platform for d in x.devices()}))] += 1
        return x

    saved = {(cls, name): cls.__dict__[name] for cls in (TorchAdapter, JaxAdapter) for name in ("from_numpy", "to_numpy")}
    for (cls, name), f in saved.items():
        see = torch_array if cls is TorchAdapter else jax_array
        if name == "from_numpy":
            cls.from_numpy = lambda self, *a, _f=f, _see=see, **k: _see(_f(self, *a, **k))
        else:  # a staticmethod
            cls.to_numpy = staticmethod(lambda x, _f=f.__func__, _see=see: _f(_see(x)))
    try:
        report = run(layers or PLACEMENT_CASES, ["float32"], device, trials=2)
    finally:
        for (cls, name), f in saved.items():
            setattr(cls, name, f)
    want = {("torch", device), ("jax", _jax_platform(device))}
    assert set(seen) == want, f"arrays seen (framework, where: count) {dict(seen)}, want all of them in {want}"
    assert report.passed, format_failures(report)
    return f"{seen['torch', device]} torch and {seen['jax', _jax_platform(device)]} JAX arrays, all on {device}"


def conv_and_pool_on_cudnn(device: str, layers: list[str] | None = None) -> str:
    """On a GPU, cuDNN is there and on; the convolution and pooling cases (or `layers`) pass in
    every dtype."""
    import torch

    from crosscheck.report import format_failures
    from crosscheck.session import run

    cudnn = torch.backends.cudnn
    if device == "cuda":
        assert cudnn.is_available() and cudnn.enabled, f"cuDNN available {cudnn.is_available()}, enabled {cudnn.enabled}"
    layers = layers or CUDNN_CASES
    report = run(layers, None, device, trials=2)
    assert report.passed, format_failures(report)
    return f"cuDNN {cudnn.version()} (enabled {cudnn.enabled}); {len(report.results)} checks of {', '.join(layers)} passed"


CHECKS = {"tf32": tf32_off_during_a_run_and_restored, "placement": every_array_on_the_device, "cudnn": conv_and_pool_on_cudnn}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.device_checks", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["env", "checks"])
    p.add_argument("--device", default="cuda", help="cpu or cuda (default cuda)")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="run every check on these cases instead of its own (repeatable)")
    p.add_argument("--results", metavar="PATH", help="write each check's name, verdict, seconds and note as JSON")
    args = p.parse_args(argv)
    if args.device not in ("cpu", "cuda"):
        p.error(f"`--device` (={args.device!r}) must be cpu or cuda")
    if args.what == "env":
        print("\n".join(environment(args.device)), flush=True)
        return 0
    results = []
    for name, check in CHECKS.items():
        start = time.monotonic()
        try:
            note, passed = check(args.device, args.layer), True
        except Exception as e:  # a check that raises is a failed check; the others still run
            traceback.print_exc()
            note, passed = f"{type(e).__name__}: {e}", False
        results.append({"name": name, "passed": passed, "seconds": round(time.monotonic() - start, 1), "note": note})
        print(f"{'PASS' if passed else 'FAIL'} {name} ({results[-1]['seconds']} s): {note}", flush=True)
        if args.results:  # after every check: a run cut short keeps what it saw
            with open(args.results, "w") as f:
                json.dump(results, f, indent=1)
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
