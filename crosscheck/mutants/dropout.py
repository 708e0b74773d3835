"""Planted bugs in dropout's backward pass."""

from __future__ import annotations

import importlib

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _torch(backward, p):
    cls = torch_with_backward(importlib.import_module("torch_layers.dropout").DropoutFunction, backward)
    return lambda x, mask: cls.apply(x, mask, p)


def _jax(bwd, rate):
    import jax.numpy as jnp

    D = importlib.import_module("jax_layers.dropout")
    f = jax_with_bwd(D._dropout, D._dropout_fwd, bwd, nondiff_argnums=(0,))
    return lambda x, mask: f(rate, x, jnp.broadcast_to(mask.astype(bool), x.shape))


def grad_not_rescaled():
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask.to(g.dtype), None, None  # masked, but the 1 / (1 - p) forgotten

    return _torch(backward, 0.25)


def grad_scaled_by_keep_rate():
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask.to(g.dtype) * (1 - ctx.p), None, None  # times the keep rate, not divided

    return _torch(backward, 0.6)


def grad_ignores_mask():
    def bwd(rate, res, g):
        return g / (1 - rate), None  # scaled, but dropped elements get gradient too

    return _jax(bwd, 0.25)


def grad_mask_inverted():
    import jax.numpy as jnp

    def bwd(rate, res, g):
        (mask,) = res
        return jnp.where(mask, 0, g / (1 - rate)), None  # the drop mask read as the keep mask

    return _jax(bwd, 0.25)


def grad_without_rate_one_rule():
    import jax.numpy as jnp

    def bwd(rate, res, g):
        (mask,) = res
        return jnp.where(mask, g / (1 - rate), 0), None  # rate 1: g / 0 where the mask keeps

    return _jax(bwd, 1.0)


for _name, _case, _side, _make, _desc in [
    ("dropout/grad-not-rescaled", "dropout", "torch", grad_not_rescaled, "gradient masked but not divided by 1 - p"),
    ("dropout-float-mask/grad-scaled-by-keep-rate", "dropout-float-mask", "torch", grad_scaled_by_keep_rate,
     "gradient multiplied by 1 - p instead of divided"),
    ("dropout/grad-ignores-mask", "dropout", "jax", grad_ignores_mask, "gradient flows into dropped elements"),
    ("dropout-broadcast/grad-mask-inverted", "dropout-broadcast", "jax", grad_mask_inverted,
     "gradient kept where the input was dropped and dropped where kept"),
    ("dropout-p1/grad-without-rate-one-rule", "dropout-p1", "jax", grad_without_rate_one_rule,
     "with rate 1, the gradient divided by 1 - rate = 0 where the mask keeps, not zeroed"),
]:
    register_mutant(Mutant(_name, _case, _side, _make(), VALUES, _desc))
