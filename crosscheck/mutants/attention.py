"""Planted bugs in attention's backward: the softmax rowsum term, the scale, K/V, the causal mask,
dropout."""

from __future__ import annotations

import importlib
import math

from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward

VALUES = ("grad", "grad-autodiff", "finite-diff")


def _T():
    return importlib.import_module("torch_layers.attention")


def _J():
    return importlib.import_module("jax_layers.attention")


# The gradients of `keep`, `is_causal`, `scale` and `dropout_p`.
REST = (None, None, None, None)


def _grads(ctx, needs, grad_out, grad_weights, is_causal=None):
    """`attention_grads` from a backward's `ctx`, with `is_causal` replaced where given."""
    q, k, v, m, keep = ctx.saved_tensors
    causal = ctx.is_causal if is_causal is None else is_causal
    return _T().attention_grads(needs, q, k, v, m, keep, causal, ctx.scale, ctx.dropout_p, grad_out, grad_weights)


def _torch(backward, is_causal=False, scale=None, dropout_p=0.0):
    """The case's function with `backward`; with `dropout_p`, its last input is the keep mask."""
    cls = torch_with_backward(_T().AttentionFunction, backward)

    def fn(q, k, v, *rest):
        s = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
        m, keep = (rest[:-1], rest[-1]) if dropout_p else (rest, None)
        return cls.apply(q, k, v, m[0] if m else None, keep, is_causal, s, dropout_p)[0]

    return fn


def _jax(bwd, is_causal=False, scale=None, mask_kind=None, dropout_p=0.0):
    A = _J()
    f = jax_with_bwd(A._attention_impl, A._fwd, bwd, nondiff_argnums=(0, 1, 2))

    def fn(q, k, v, *rest):
        import jax.numpy as jnp

        s = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
        m, keep = (rest[:-1], rest[-1]) if dropout_p else (rest, None)
        m = m[0] if m else None
        bias, mask = (None, m) if mask_kind == "bool" else (m, None)
        logits = (*q.shape[:-3], q.shape[-2], q.shape[-3], k.shape[-3])
        keep = None if keep is None else jnp.broadcast_to(keep, logits)
        return f(s, is_causal, dropout_p, q, k, v, bias, mask, keep)

    return fn


def torch_no_rowsum():
    import torch

    T = _T()

    def backward(ctx, grad_out, grad_weights):
        q, k, v, m, _ = ctx.saved_tensors
        p = T._probs(q, k, m, ctx.is_causal, ctx.scale)
        dp = torch.matmul(grad_out, v.mT) + grad_weights
        ds = p * dp  # the softmax Jacobian's diagonal only: - rowsum(dP * P) dropped
        s = ctx.scale
        return torch.matmul(ds, k) * s, torch.matmul(ds.mT, q) * s, torch.matmul(p.mT, grad_out), None, None, None, None, None

    return _torch(backward)


def torch_scale_missing():
    def backward(ctx, grad_out, grad_weights):
        gq, gk, gv, gm = _grads(ctx, ctx.needs_input_grad, grad_out, grad_weights)
        unscale = lambda g: None if g is None else g / ctx.scale  # noqa: E731
        return unscale(gq), unscale(gk), gv, gm, *REST  # d(scale q k^T) without the scale

    return _torch(backward, is_causal=True, scale=0.3)


def torch_key_value_swapped():
    def backward(ctx, grad_out, grad_weights):
        needs = ctx.needs_input_grad
        gq, gk, gv, gm = _grads(ctx, (needs[0], True, True, needs[3]), grad_out, grad_weights)
        # Same shapes when E == Ev, so only the values tell.
        return gq, gv if needs[1] else None, gk if needs[2] else None, gm, *REST

    return _torch(backward)


def torch_causal_ignored():
    def backward(ctx, grad_out, grad_weights):
        grads = _grads(ctx, ctx.needs_input_grad, grad_out, grad_weights, is_causal=False)
        return (*grads, *REST)  # weights recomputed without the causal mask

    return _torch(backward, is_causal=True)


def jax_no_rowsum():
    import jax.numpy as jnp

    A = _J()

    def bwd(scale, is_causal, rate, res, g):
        q, k, v, bias, mask, _ = res
        p = A._probs(q, k, bias, mask, is_causal, scale)
        dp = jnp.einsum("...tnh,...snh->...nts", g, v)
        ds = p * dp  # - rowsum(dP * P) dropped
        grad_bias = None if bias is None else A._sum_to(ds, bias.shape)
        return (jnp.einsum("...nts,...snh->...tnh", ds, k) * scale, jnp.einsum("...nts,...tnh->...snh", ds, q) * scale,
                jnp.einsum("...nts,...tnh->...snh", p, g), grad_bias, None, None)

    return _jax(bwd, mask_kind="float")


def jax_scale_twice():
    A = _J()

    def bwd(scale, is_causal, rate, res, g):
        gq, gk, gv, *rest = A._bwd(scale, is_causal, rate, res, g)
        return gq * scale, gk * scale, gv, *rest  # the scale applied again on top of dS

    return _jax(bwd)


def jax_key_value_swapped():
    A = _J()

    def bwd(scale, is_causal, rate, res, g):
        gq, gk, gv, *rest = A._bwd(scale, is_causal, rate, res, g)
        return gq, gv, gk, *rest

    return _jax(bwd, mask_kind="bool")


def jax_causal_ignored():
    A = _J()

    def bwd(scale, is_causal, rate, res, g):
        return A._bwd(scale, False, rate, res, g)

    return _jax(bwd, is_causal=True, scale=0.3)


def torch_dropout_not_in_grad():
    T = _T()

    def backward(ctx, grad_out, grad_weights):
        # The weights' gradient taken as if nothing had been dropped: keep = None.
        q, k, v, m, _ = ctx.saved_tensors
        grads = T.attention_grads(ctx.needs_input_grad, q, k, v, m, None, ctx.is_causal, ctx.scale, ctx.dropout_p,
                                  grad_out, grad_weights)
        return (*grads, *REST)

    return _torch(backward, dropout_p=0.25)


def jax_dropout_value_grad_undropped():
    import jax.numpy as jnp

    A = _J()

    def bwd(scale, is_causal, rate, res, g):
        q, k, v, bias, mask, keep = res
        gq, gk, _, *rest = A._bwd(scale, is_causal, rate, res, g)
        p = A._probs(q, k, bias, mask, is_causal, scale)
        return (gq, gk, jnp.einsum("...nts,...tnh->...snh", p, g), *rest)  # P^T dO: the dropout forgotten in dV

    return _jax(bwd, is_causal=True, dropout_p=0.6)


for _name, _case, _side, _make, _desc in [
    ("dropout-not-in-grad", "scaled_dot_product_attention-dropout", "torch", torch_dropout_not_in_grad,
     "dropout's keep mask and 1 / (1 - p) left out of the weights' gradient (query, key, mask)"),
    ("dropout-value-grad-undropped-jax", "scaled_dot_product_attention-dropout-causal", "jax",
     jax_dropout_value_grad_undropped, "value gradient P^T dO from the weights before dropout, not W^T dO"),
    ("no-rowsum", "scaled_dot_product_attention", "torch", torch_no_rowsum,
     "softmax backward P * dP, without the - rowsum(dP * P) term"),
    ("scale-missing", "scaled_dot_product_attention-causal-scale", "torch", torch_scale_missing,
     "query and key gradients without the logit scale"),
    ("key-value-swapped", "scaled_dot_product_attention-bool-mask", "torch", torch_key_value_swapped,
     "key and value gradients returned in each other's place"),
    ("causal-ignored", "scaled_dot_product_attention-causal", "torch", torch_causal_ignored,
     "backward recomputes the weights without the causal mask"),
    ("no-rowsum-jax", "scaled_dot_product_attention-float-mask", "jax", jax_no_rowsum,
     "softmax backward P * dP, without the - rowsum(dP * P) term (bias gradient too)"),
    ("scale-twice-jax", "scaled_dot_product_attention", "jax", jax_scale_twice,
     "query and key gradients scaled twice"),
    ("key-value-swapped-jax", "scaled_dot_product_attention-bool-mask", "jax", jax_key_value_swapped,
     "key and value gradients returned in each other's place"),
    ("causal-ignored-jax", "scaled_dot_product_attention-causal-scale", "jax", jax_causal_ignored,
     "bwd recomputes the weights without the causal mask"),
]:
    register_mutant(Mutant(f"attention/{_name}", _case, _side, _make(), VALUES, _desc))
