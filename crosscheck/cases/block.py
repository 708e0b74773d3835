"""Cases for blocks built only from custom layers: a chain of hand-written backward passes,
checked as one function against the same chain of standard ops."""

from __future__ import annotations

import functools

from ..layout import IDENTITY, TRANSPOSE, permute
from ..registry import Case, Tensor, register

NCHW_NHWC = permute(0, 2, 3, 1)
OIHW_HWIO = permute(2, 3, 1, 0)
D_MODEL, D_HIDDEN, EPS = 6, 10, 1e-5  # the declared sizes; shape buckets draw others


def mlp_torch(x, nw, nb, w1, b1, w2, b2):
    from torch_layers.block import transformer_mlp

    return transformer_mlp(x, nw, nb, w1, b1, w2, b2, EPS)


def mlp_torch_ref(x, nw, nb, w1, b1, w2, b2):
    import torch.nn.functional as F

    h = F.gelu(F.linear(F.layer_norm(x, x.shape[-1:], nw, nb, EPS), w1, b1))
    return x + F.linear(h, w2, b2)


def mlp_jax(x, ns, nb, k1, b1, k2, b2):
    from jax_layers.block import transformer_mlp

    return transformer_mlp(x, ns, nb, k1, b1, k2, b2, EPS)


def mlp_jax_ref(x, ns, nb, k1, b1, k2, b2):
    import jax
    import jax.numpy as jnp

    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    h = (x - mean) * jax.lax.rsqrt(var + EPS) * ns + nb
    h = jax.nn.gelu(h @ k1 + b1, approximate=False)
    return x + h @ k2 + b2


# The cases' functions and modules are module-level, their options bound by `functools.partial`:
# they then pickle by reference, which closures do not.


def _torch_module(dtype, device, *, cls, args):
    """torch_layers.block's `cls(*args)`."""
    from torch_layers import block

    return getattr(block, cls)(*args, eps=EPS, dtype=dtype, device=device)


def _jax_module(dtype, *, cls, args):
    """jax_layers.block's `cls(*args)`."""
    from flax import nnx

    from jax_layers import block

    return getattr(block, cls)(*args, epsilon=EPS, param_dtype=dtype, rngs=nnx.Rngs(0))


def _mlp_case(batch, d_model, d_hidden):
    return Case(
        name="transformer_mlp",
        family="block",
        inputs=(Tensor("input", (*batch, d_model)),),
        params=(
            Tensor("norm.weight", (d_model,), jax_name="norm.scale"),
            Tensor("norm.bias", (d_model,), jax_name="norm.bias"),
            Tensor("fc1.weight", (d_hidden, d_model), layout=TRANSPOSE, jax_name="fc1.kernel"),
            Tensor("fc1.bias", (d_hidden,), jax_name="fc1.bias"),
            Tensor("fc2.weight", (d_model, d_hidden), layout=TRANSPOSE, jax_name="fc2.kernel"),
            Tensor("fc2.bias", (d_model,), jax_name="fc2.bias"),
        ),
        torch_fn=mlp_torch,
        torch_ref=mlp_torch_ref,
        jax_fn=mlp_jax,
        jax_ref=mlp_jax_ref,
        torch_module=functools.partial(_torch_module, cls="TransformerMLP", args=(d_model, d_hidden)),
        jax_module=functools.partial(_jax_module, cls="TransformerMLP", args=(d_model, d_hidden)),
        description=f"x + fc2(gelu(fc1(layer_norm(x)))), d_model {d_model}, hidden {d_hidden}",
    )


def _mlp_bucket(leading, batch, d_model, d_hidden):
    return _mlp_case(tuple(batch + i for i in range(leading)), d_model, d_hidden)


# Buckets: 0..2 batch dims, any hidden width, d_model from 5: the LayerNorm's variance is
# ill-conditioned over fewer elements (cases/norm.py).
MLP_RANGES = dict(leading=range(3), batch=range(1, 4), d_model=range(5, 9), d_hidden=range(1, 9))
register(_mlp_case((3, 1), D_MODEL, D_HIDDEN), _mlp_bucket, MLP_RANGES)

C_IN, C_OUT, GROUPS = 3, 4, 2


def cnn_torch(x, w, b, nw, nb, *, groups):
    from torch_layers.block import conv_block

    return conv_block(x, w, b, nw, nb, groups, EPS)


def cnn_torch_ref(x, w, b, nw, nb, *, groups):
    import torch.nn.functional as F

    h = F.silu(F.group_norm(F.conv2d(x, w, b, padding=(1, 0)), groups, nw, nb, EPS))
    return F.avg_pool2d(h, 2)


def cnn_jax(x, k, b, ns, nb, *, groups):
    from jax_layers.block import conv_block

    return conv_block(x, k, b, ns, nb, groups, EPS)


def cnn_jax_ref(x, k, b, ns, nb, *, groups):
    import jax
    import jax.numpy as jnp

    h = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    n, hh, ww, c = h.shape
    g = h.reshape(n, hh, ww, groups, c // groups)
    mean = jnp.mean(g, (1, 2, 4), keepdims=True)
    var = jnp.mean(jnp.square(g - mean), (1, 2, 4), keepdims=True)
    h = ((g - mean) * jax.lax.rsqrt(var + EPS)).reshape(h.shape) * ns + nb
    h = jax.nn.silu(h)
    return jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4


def _cnn_case(in_shape, c_out, groups):
    c_in = in_shape[1]
    return Case(
        name="conv_block",
        family="block",
        inputs=(Tensor("input", in_shape, layout=NCHW_NHWC),),
        params=(
            Tensor("conv.weight", (c_out, c_in, 3, 2), layout=OIHW_HWIO, jax_name="conv.kernel"),
            Tensor("conv.bias", (c_out,), jax_name="conv.bias"),
            Tensor("norm.weight", (c_out,), jax_name="norm.scale"),
            Tensor("norm.bias", (c_out,), jax_name="norm.bias", layout=IDENTITY),
        ),
        torch_fn=functools.partial(cnn_torch, groups=groups),
        torch_ref=functools.partial(cnn_torch_ref, groups=groups),
        jax_fn=functools.partial(cnn_jax, groups=groups),
        jax_ref=functools.partial(cnn_jax_ref, groups=groups),
        torch_module=functools.partial(_torch_module, cls="ConvBlock", args=(c_in, c_out, groups)),
        jax_module=functools.partial(_jax_module, cls="ConvBlock", args=(c_in, c_out, groups)),
        out_layouts=(NCHW_NHWC,),
        description=f"avg_pool(silu(group_norm(conv3x2(x)))), {c_in}->{c_out} channels, {groups} groups",
    )


def _cnn_bucket(n, c_in, groups, per_group, height, width):
    return _cnn_case((n, c_in, height, width), groups * per_group, groups)


# Buckets: the conv keeps the height and loses a column and the pool needs 2x2 of what is
# left; height and width from 3 give each group's variance at least 6 elements (it is
# ill-conditioned over fewer: cases/norm.py). Odd sizes drop a row or column in the pool.
CNN_RANGES = dict(n=range(1, 3), c_in=range(1, 4), groups=range(1, 3), per_group=range(1, 3),
                  height=range(3, 7), width=range(3, 8))
# Odd height: the 2x2 pool drops the last row, whose gradient must come back zero.
# A 3x2 kernel and a (5, 7) input: no square spatial shape for a swap to hide in.
register(_cnn_case((2, C_IN, 5, 7), C_OUT, GROUPS), _cnn_bucket, CNN_RANGES)
