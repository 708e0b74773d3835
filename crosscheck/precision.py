"""Precision settings, set in one place for a run and restored after it.

`run_settings()` is everything a run sets in the process, for the run only: JAX's float64 and
compilation cache (`adapters.jax_config.configured`) and full precision (`full_precision`). A
run from a user's Python process (`crosscheck.run`, `crosscheck.check`, a pytest plugin item)
leaves their JAX, torch and environment as it found them.

On GPU, TF32 would make float32 matmuls and convolutions agree to about 1e-3 only; both
frameworks are held to full float32 while the harness runs. torch is steered through its
`allow_tf32` flags alone: newer torch refuses to report a matmul precision once its legacy and
new precision APIs have both been used, so the harness never reads or sets the latter.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def run_settings():
    """The process as a run needs it inside the block, and as it was after it. Enter it before
    the run's first JAX array: float64 arrays need `jax_enable_x64` when they are made."""
    from .adapters.jax_config import configured

    with configured(), full_precision():
        yield


@contextlib.contextmanager
def full_precision():
    import jax
    import torch

    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        jax.config.jax_default_matmul_precision,
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    with _cudnn_unfrozen(torch):
        torch.backends.cudnn.allow_tf32 = False
    jax.config.update("jax_default_matmul_precision", "highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved[0]
        with _cudnn_unfrozen(torch):
            torch.backends.cudnn.allow_tf32 = saved[1]
        jax.config.update("jax_default_matmul_precision", saved[2])


def _cudnn_unfrozen(torch):
    """Where cuDNN's flags are frozen (`torch.backends.disable_global_flags()`, which importing
    torch's own test suite, `torch.testing._internal`, calls), setting one raises; torch's
    `cudnn.flags()` sets them through this private context manager, and so does this."""
    if not torch.backends.flags_frozen():
        return contextlib.nullcontext()
    return getattr(torch.backends, "__allow_nonbracketed_mutation")()
