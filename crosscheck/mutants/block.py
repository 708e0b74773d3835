"""Planted bugs deep inside the blocks: one layer's backward broken in a chain of correct ones.

Each mutant rebuilds the block's forward with one hand-written layer swapped for a broken
twin, so the bug has to be found through the other layers' backward passes.
"""

from __future__ import annotations

import importlib

from ..cases.block import EPS, GROUPS
from ._core import Mutant, jax_with_bwd, register_mutant, torch_with_backward


def _torch_mod(name):
    return importlib.import_module(f"torch_layers.{name}")


def mlp_fc1_weight_grad_doubled():
    """torch: the first Linear's weight gradient twice too large."""
    lin = _torch_mod("linear")

    def backward(ctx, g):
        gi, gw, gb = lin.LinearFunction.backward(ctx, g)
        return gi, None if gw is None else 2 * gw, gb

    bad = torch_with_backward(lin.LinearFunction, backward)

    def fn(x, nw, nb, w1, b1, w2, b2):
        h = _torch_mod("norm").layer_norm(x, x.shape[-1:], nw, nb, EPS)
        h = _torch_mod("activation").gelu(bad.apply(h, w1, b1))
        return x + lin.linear(h, w2, b2)

    return fn


def mlp_layer_norm_without_mean_term():
    """jax: the block's LayerNorm swapped for one whose VJP drops the mean term."""
    import jax
    import jax.numpy as jnp

    act, lin = importlib.import_module("jax_layers.activation"), importlib.import_module("jax_layers.linear")

    def norm(x):
        mean = jnp.mean(x, -1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(jnp.mean(jnp.square(x - mean), -1, keepdims=True) + EPS)

    def fwd(x):
        return norm(x), (x,)

    def bwd(res, g):
        (x,) = res
        xhat = norm(x)
        rstd = jax.lax.rsqrt(jnp.var(x, -1, keepdims=True) + EPS)
        # Missing `- mean(g)`: only the projection on xhat is removed.
        return (rstd * (g - xhat * jnp.mean(g * xhat, -1, keepdims=True)),)

    bad_norm = jax_with_bwd(norm, fwd, bwd)

    def fn(x, ns, nb, k1, b1, k2, b2):
        h = bad_norm(x) * ns + nb
        h = act.gelu(lin.linear(h, k1, b1), approximate=False)
        return x + lin.linear(h, k2, b2)

    return fn


def cnn_silu_derivative_is_sigmoid():
    """jax: SiLU's derivative taken as sigmoid(x) (the derivative of x * s with s constant)."""
    act = importlib.import_module("jax_layers.activation")
    conv, norm, pool = (importlib.import_module(f"jax_layers.{m}") for m in ("conv", "norm", "pool"))

    def bwd(res, g):
        (x,) = res
        return (g * act._sigmoid(x),)

    bad_silu = jax_with_bwd(act._silu, act._silu_fwd, bwd)

    def fn(x, k, b, ns, nb):
        h = conv.conv(x, k, b, padding=((1, 1), (0, 0)))
        h = bad_silu(norm.group_norm(h, GROUPS, ns, nb, epsilon=EPS))
        return pool.avg_pool(h, (2, 2), strides=(2, 2))

    return fn


def cnn_avg_pool_not_divided():
    """torch: average-pool gradient spread without dividing by the window size."""
    pool, act, conv, norm = (_torch_mod(m) for m in ("pool", "activation", "conv", "norm"))

    def backward(ctx, g):
        grads = pool.AvgPool2dFunction.backward(ctx, g)
        return (None if grads[0] is None else 4 * grads[0], *grads[1:])

    bad = torch_with_backward(pool.AvgPool2dFunction, backward)

    def fn(x, w, b, nw, nb):
        h = act.silu(norm.group_norm(conv.conv2d(x, w, b, padding=(1, 0)), GROUPS, nw, nb, EPS))
        return bad.apply(h, (2, 2), (2, 2), (0, 0), False, True, None)

    return fn


_GRAD = ("grad", "grad-autodiff", "finite-diff")
register_mutant(Mutant("transformer_mlp/fc1-weight-grad-doubled", "transformer_mlp", "torch",
                       mlp_fc1_weight_grad_doubled(), _GRAD, "first Linear's weight gradient doubled inside the block"))
register_mutant(Mutant("transformer_mlp/layer-norm-no-mean-term", "transformer_mlp", "jax",
                       mlp_layer_norm_without_mean_term(), _GRAD, "LayerNorm VJP without the mean term inside the block"))
register_mutant(Mutant("conv_block/silu-derivative-is-sigmoid", "conv_block", "jax",
                       cnn_silu_derivative_is_sigmoid(), _GRAD, "SiLU derivative taken as sigmoid(x) inside the block"))
register_mutant(Mutant("conv_block/avg-pool-grad-not-divided", "conv_block", "torch",
                       cnn_avg_pool_not_divided(), _GRAD, "average-pool gradient not divided by the window size"))
