"""Linear, Conv and ConvTranspose take flax.nnx's own arguments: precision, dot_general /
conv_general_dilated, promote_dtype, preferred_element_type and parameter metadata, with the
built-ins' values and gradients (their hand-written VJPs run the user's products too)."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from helpers import np_rng

JC, JL = importlib.import_module("jax_layers.conv"), importlib.import_module("jax_layers.linear")

CALLS = []


def counting_dot_general(*args, **kwargs):
    CALLS.append("dot")
    return lax.dot_general(*args, **kwargs)


def counting_conv(*args, **kwargs):
    CALLS.append("conv")
    return lax.conv_general_dilated(*args, **kwargs)


def half_promote(args, dtype=None):
    """A user's promote_dtype: everything to bfloat16."""
    return tuple(None if a is None else a.astype(jnp.bfloat16) for a in args)


LAYERS = {
    "Linear": ((3, 5), (4, 2, 3), {"dot_general": counting_dot_general}),
    "Conv": ((3, 4, (3, 2)), (2, 6, 5, 3), {"conv_general_dilated": counting_conv}),
    "ConvTranspose": ((3, 4, (3, 2)), (2, 4, 3, 3), {}),
}
OPTIONS = {
    "precision": {"precision": lax.Precision.HIGHEST},
    "preferred": {"preferred_element_type": jnp.float32, "param_dtype": jnp.bfloat16, "dtype": jnp.bfloat16},
    "promote_dtype": {"promote_dtype": half_promote},
    "metadata": {"kernel_metadata": {"note": "k"}, "bias_metadata": {"note": "b"}},
    "own-products": {},
}


def _loss(model, x):
    return jnp.sum(jnp.sin(model(x).astype(jnp.float32)))


@pytest.mark.parametrize("cls,option", [(c, o) for c in LAYERS for o in OPTIONS if LAYERS[c][2] or o != "own-products"])
def test_nnx_arguments_match_the_builtin(cls, option):
    args, x_shape, products = LAYERS[cls]
    kwargs = products if option == "own-products" else OPTIONS[option]
    ours = getattr(JC if cls != "Linear" else JL, cls)(*args, **kwargs, rngs=nnx.Rngs(0))
    builtin = getattr(nnx, cls)(*args, **kwargs, rngs=nnx.Rngs(0))
    for name in ("kernel", "bias"):
        a, b = getattr(ours, name), getattr(builtin, name)
        np.testing.assert_array_equal(a[...], b[...])
        assert a.get_metadata() == b.get_metadata(), name
    x = jnp.asarray(np_rng().standard_normal(x_shape), jnp.float32)
    ya, yb = ours(x), builtin(x)
    assert ya.dtype == yb.dtype
    np.testing.assert_allclose(ya, yb, rtol=1e-6, atol=1e-6)
    ga = nnx.grad(_loss, argnums=(0, 1))(ours, x)
    gb = nnx.grad(_loss, argnums=(0, 1))(builtin, x)
    assert ga[1].dtype == gb[1].dtype
    np.testing.assert_allclose(ga[1], gb[1], rtol=1e-5, atol=1e-5)
    for name in ("kernel", "bias"):
        assert ga[0][name][...].dtype == gb[0][name][...].dtype == getattr(ours, name)[...].dtype
        # bfloat16 gradients summed in different orders: a few units of its last place.
        tol = 3e-2 if option in ("preferred", "promote_dtype") else 1e-5
        np.testing.assert_allclose(np.float32(ga[0][name][...]), np.float32(gb[0][name][...]), rtol=tol, atol=tol)


def test_own_products_run_in_the_backward():
    """The user's dot_general takes the two gradient products too (not only the forward)."""
    CALLS.clear()
    x, k = jnp.ones((2, 3)), jnp.ones((3, 4))
    jax.grad(lambda x, k: JL.linear(x, k, dot_general=counting_dot_general).sum(), argnums=(0, 1))(x, k)
    assert CALLS == ["dot"] * 3
    CALLS.clear()
    jax.grad(lambda x, k: JC.conv(x, k, conv_general_dilated=counting_conv).sum(), argnums=(0, 1))(
        jnp.ones((1, 5, 3)), jnp.ones((2, 3, 4)))
    assert CALLS == ["conv"] * 3


def test_out_sharding_is_refused_naming_the_builtin():
    with pytest.raises(ValueError, match=r"`out_sharding` \(='x'\).*flax.nnx.Linear"):
        JL.Linear(3, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 3)), out_sharding="x")
