"""Precision settings: full float32 on both sides during a run, and restored after it."""

from __future__ import annotations

import jax
import torch

from crosscheck.precision import _cudnn_unfrozen, full_precision
from crosscheck.session import run


def _set_tf32(matmul: bool, cudnn: bool) -> None:
    """The user's TF32 flags, set even where cuDNN's flags are frozen (importing
    torch.testing._internal, as test_dropin_audit does in the same worker, freezes them)."""
    torch.backends.cuda.matmul.allow_tf32 = matmul
    with _cudnn_unfrozen(torch):
        torch.backends.cudnn.allow_tf32 = cudnn


def test_tf32_off_during_the_run_and_restored_after():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, jax.config.jax_default_matmul_precision)
    _set_tf32(True, True)
    jax.config.update("jax_default_matmul_precision", "bfloat16")
    seen = []
    try:
        run(layers=["sigmoid"], dtypes=["float32"], trials=1, device="cpu",
            on_case=lambda *_: seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                                            jax.config.jax_default_matmul_precision)))
        assert seen == [(False, False, "highest")]
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert jax.config.jax_default_matmul_precision == "bfloat16"
    finally:
        _set_tf32(*saved[:2])
        jax.config.update("jax_default_matmul_precision", saved[2])


def test_restored_even_when_the_body_raises():
    before = (torch.backends.cuda.matmul.allow_tf32, jax.config.jax_default_matmul_precision)
    try:
        with full_precision():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert (torch.backends.cuda.matmul.allow_tf32, jax.config.jax_default_matmul_precision) == before


def test_frozen_cudnn_flags_are_set_and_restored():
    # torch.testing._internal (the drop-in audit's OpInfo samples) freezes cuDNN's flags on import.
    import torch

    from crosscheck.precision import full_precision

    torch.backends.disable_global_flags()
    try:
        before = torch.backends.cudnn.allow_tf32
        with full_precision():
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 == before
    finally:
        setattr(torch.backends, "__allow_nonbracketed_mutation_flag", True)
