"""Cases for blocks built only from custom layers: a chain of hand-written backward passes,
checked as one function against the same chain of standard ops."""

from __future__ import annotations

from ..layout import IDENTITY, TRANSPOSE, permute
from ..registry import Case, Tensor, register

NCHW_NHWC = permute(0, 2, 3, 1)
OIHW_HWIO = permute(2, 3, 1, 0)
D_MODEL, D_HIDDEN, EPS = 6, 10, 1e-5


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


def mlp_torch_module(dtype, device):
    from torch_layers.block import TransformerMLP

    return TransformerMLP(D_MODEL, D_HIDDEN, eps=EPS, dtype=dtype, device=device)


def mlp_jax_module(dtype):
    from flax import nnx

    from jax_layers.block import TransformerMLP

    return TransformerMLP(D_MODEL, D_HIDDEN, epsilon=EPS, param_dtype=dtype, rngs=nnx.Rngs(0))


register(
    Case(
        name="transformer_mlp",
        family="block",
        inputs=(Tensor("input", (3, 1, D_MODEL)),),
        params=(
            Tensor("norm.weight", (D_MODEL,), jax_name="norm.scale"),
            Tensor("norm.bias", (D_MODEL,), jax_name="norm.bias"),
            Tensor("fc1.weight", (D_HIDDEN, D_MODEL), layout=TRANSPOSE, jax_name="fc1.kernel"),
            Tensor("fc1.bias", (D_HIDDEN,), jax_name="fc1.bias"),
            Tensor("fc2.weight", (D_MODEL, D_HIDDEN), layout=TRANSPOSE, jax_name="fc2.kernel"),
            Tensor("fc2.bias", (D_MODEL,), jax_name="fc2.bias"),
        ),
        torch_fn=mlp_torch,
        torch_ref=mlp_torch_ref,
        jax_fn=mlp_jax,
        jax_ref=mlp_jax_ref,
        torch_module=mlp_torch_module,
        jax_module=mlp_jax_module,
        description=f"x + fc2(gelu(fc1(layer_norm(x)))), d_model {D_MODEL}, hidden {D_HIDDEN}",
    )
)

C_IN, C_OUT, GROUPS = 3, 4, 2


def cnn_torch(x, w, b, nw, nb):
    from torch_layers.block import conv_block

    return conv_block(x, w, b, nw, nb, GROUPS, EPS)


def cnn_torch_ref(x, w, b, nw, nb):
    import torch.nn.functional as F

    h = F.silu(F.group_norm(F.conv2d(x, w, b, padding=(1, 0)), GROUPS, nw, nb, EPS))
    return F.avg_pool2d(h, 2)


def cnn_jax(x, k, b, ns, nb):
    from jax_layers.block import conv_block

    return conv_block(x, k, b, ns, nb, GROUPS, EPS)


def cnn_jax_ref(x, k, b, ns, nb):
    import jax
    import jax.numpy as jnp

    h = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    n, hh, ww, c = h.shape
    g = h.reshape(n, hh, ww, GROUPS, c // GROUPS)
    mean = jnp.mean(g, (1, 2, 4), keepdims=True)
    var = jnp.mean(jnp.square(g - mean), (1, 2, 4), keepdims=True)
    h = ((g - mean) * jax.lax.rsqrt(var + EPS)).reshape(h.shape) * ns + nb
    h = jax.nn.silu(h)
    return jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4


def cnn_torch_module(dtype, device):
    from torch_layers.block import ConvBlock

    return ConvBlock(C_IN, C_OUT, GROUPS, eps=EPS, dtype=dtype, device=device)


def cnn_jax_module(dtype):
    from flax import nnx

    from jax_layers.block import ConvBlock

    return ConvBlock(C_IN, C_OUT, GROUPS, epsilon=EPS, param_dtype=dtype, rngs=nnx.Rngs(0))


register(
    Case(
        name="conv_block",
        family="block",
        # Odd height: the 2x2 pool drops the last row, whose gradient must come back zero.
        # A 3x2 kernel and a (5, 7) input: no square spatial shape for a swap to hide in.
        inputs=(Tensor("input", (2, C_IN, 5, 7), layout=NCHW_NHWC),),
        params=(
            Tensor("conv.weight", (C_OUT, C_IN, 3, 2), layout=OIHW_HWIO, jax_name="conv.kernel"),
            Tensor("conv.bias", (C_OUT,), jax_name="conv.bias"),
            Tensor("norm.weight", (C_OUT,), jax_name="norm.scale"),
            Tensor("norm.bias", (C_OUT,), jax_name="norm.bias", layout=IDENTITY),
        ),
        torch_fn=cnn_torch,
        torch_ref=cnn_torch_ref,
        jax_fn=cnn_jax,
        jax_ref=cnn_jax_ref,
        torch_module=cnn_torch_module,
        jax_module=cnn_jax_module,
        out_layouts=(NCHW_NHWC,),
        description=f"avg_pool(silu(group_norm(conv3x2(x)))), {C_IN}->{C_OUT} channels, {GROUPS} groups",
    )
)
