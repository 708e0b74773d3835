"""Where our layers differ from the built-ins they replace, each with its reason: the one place
`tests/test_dropin_audit.py` reads (README's "What the drop-ins accept" says the same in words).

A difference found and not listed fails the audit, and so does a listed one that is gone.
"""

from __future__ import annotations

# An explicit keep mask, the one argument every layer with randomness adds: torch's and JAX's
# generators differ, so two frameworks drop the same elements only when both are given one.
KEEP_MASK = "an explicit dropout keep mask (an addition): the two frameworks' generators differ"

# Signature differences: {(built-in, function or method): {argument: reason}}.
SIGNATURES = {
    ("torch.nn.functional", "dropout"): {"mask": KEEP_MASK},
    ("torch.nn.functional", "scaled_dot_product_attention"): {"dropout_mask": KEEP_MASK},
    ("torch.nn.functional", "multi_head_attention_forward"): {"dropout_mask": KEEP_MASK},
    ("torch.nn", "Dropout.forward"): {"mask": KEEP_MASK},
    ("torch.nn", "MultiheadAttention.forward"): {"dropout_mask": KEEP_MASK},
    ("flax.nnx", "Dropout.__call__"): {"mask": KEEP_MASK},
    ("flax.nnx", "MultiHeadAttention.__call__"): {"dropout_mask": KEEP_MASK},
    ("flax.nnx", "MultiHeadAttention.__init__"): {
        "attention_fn": "the default is our attention with its hand-written VJP (flax's own would bypass it)",
    },
    ("flax.nnx", "Embed.__init__"): {
        "padding_idx": "an addition for parity with torch.nn.Embedding (a zero row without gradient)",
    },
    ("flax.nnx", "GRUCell.__init__"): {
        "use_recurrent_bias": "an addition for torch.nn.GRUCell's b_hn, which flax.nnx's cell lacks",
    },
}

# Built-ins whose signature Python cannot read, compared through what they dispatch to.
SIGNATURE_OF = {
    "max_pool2d": "_max_pool2d",  # a boolean_dispatch over `return_indices`: (*args, **kwargs)
}

# Public layers with no built-in of the same name, and why.
NO_BUILTIN = {
    "torch.nn": {
        "ConvBlock": "conv, norm and activation fused: our own block",
        "TransformerMLP": "a transformer's feed-forward block: our own",
        "ScaledDotProductAttention": "torch.nn has no module for it; the functional's counterpart",
        "Permute": "torch.nn has no module for torch.permute",
        "Reshape": "torch.nn has no module for torch.reshape",
    },
    "torch.nn.functional": {
        "conv_block": "our own block",
        "transformer_mlp": "our own block",
        "permute": "torch.permute, not in torch.nn.functional",
        "reshape": "torch.reshape, not in torch.nn.functional",
        "flatten": "torch.flatten, not in torch.nn.functional",
        "gru_cell": "torch's cells are modules only",
        "lstm_cell": "torch's cells are modules only",
    },
    "flax.nnx": {
        name: "flax.nnx has functions for it, no module; the torch module's counterpart"
        for name in ("AvgPool", "MaxPool", "ELU", "GELU", "LeakyReLU", "ReLU", "SiLU", "Sigmoid", "Softplus", "Tanh",
                     "Softmax", "LogSoftmax", "Flatten", "CrossEntropyLoss", "MSELoss")
    }
    | {
        "ConvBlock": "our own block",
        "TransformerMLP": "our own block",
        "DotProductAttention": "jax.nn.dot_product_attention as a module; flax.nnx has none",
        "Permute": "jnp.transpose as a module; flax.nnx has none",
        "Reshape": "jnp.reshape as a module; flax.nnx has none",
    },
}

# OpInfo samples the built-in takes and ours refuses: {op: [(what the sample is, reason)]}.
# `matches(sample)` picks them out.
REFUSED_SAMPLES: dict[str, list[tuple[str, str, object]]] = {}

# OpInfo ops called with their arguments in another order than the functional's.
ARGUMENT_ORDER = {
    "embedding": lambda f: lambda weight, idx, **kwargs: f(idx, weight, **kwargs),
}


def _out_of_scope():
    """`[(argument, built-in to use, the call that passes it)]`: the built-ins' arguments that are
    out of scope here, each refused with an error that names the built-in (README lists them)."""
    import jax.numpy as jnp
    import torch
    from flax import nnx

    import jax_layers as J
    import torch_layers as T

    x, q = torch.ones(2, 3, 4), jnp.ones((1, 3, 2, 4))
    rngs = nnx.Rngs(0)
    return [
        ("enable_gqa", "torch.nn.functional.scaled_dot_product_attention",
         lambda: T.scaled_dot_product_attention(torch.ones(1, 4, 3, 2), torch.ones(1, 2, 5, 2), torch.ones(1, 2, 5, 2), enable_gqa=True)),
        ("static_k", "torch.nn.functional.multi_head_attention_forward",
         lambda: T.multi_head_attention_forward(x, x, x, 4, 2, torch.ones(12, 4), None, None, None, False, 0.0,
                                                torch.ones(4, 4), None, static_k=torch.ones(6, 3, 2))),
        ("max_norm", "torch.nn.functional.embedding", lambda: T.embedding(torch.zeros(2, dtype=torch.long), torch.ones(3, 2), max_norm=1.0)),
        ("sparse", "torch.nn.Embedding", lambda: T.Embedding(3, 2, sparse=True)),
        ("weight", "torch.nn.functional.mse_loss", lambda: T.mse_loss(x, x, weight=x)),
        ("local_window_size", "jax.nn.dot_product_attention", lambda: J.dot_product_attention(q, q, q, local_window_size=(1, 1))),
        ("precision", "flax.nnx.dot_product_attention", lambda: J.attention.nnx_attention_fn(q, q, q, precision="highest")),
        ("normalize_qk", "flax.nnx.MultiHeadAttention", lambda: J.MultiHeadAttention(2, 4, normalize_qk=True, rngs=rngs)),
        ("decode", "flax.nnx.MultiHeadAttention", lambda: J.MultiHeadAttention(2, 4, rngs=rngs)(jnp.ones((1, 3, 4)), decode=True)),
        ("out_sharding", "flax.nnx.Conv", lambda: J.Conv(2, 3, (2,), rngs=rngs)(jnp.ones((1, 4, 2)), out_sharding="x")),
        ("out_sharding", "flax.nnx.Embed", lambda: J.Embed(3, 2, rngs=rngs)(jnp.zeros(2, int), out_sharding="x")),
        ("axis_name", "flax.nnx.BatchNorm", lambda: J.BatchNorm(3, axis_name="batch", rngs=rngs)),
        ("padding", "flax.nnx.ConvTranspose",
         lambda: J.ConvTranspose(2, 3, (2,), padding="CIRCULAR", rngs=rngs)(jnp.ones((1, 4, 2)))),
    ]


OUT_OF_SCOPE = _out_of_scope
