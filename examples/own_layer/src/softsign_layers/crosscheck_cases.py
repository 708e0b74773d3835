"""The crosscheck cases of this package: importing this module registers them.

The package's entry point (`crosscheck.cases` in pyproject.toml) names this module, so an
installed copy's cases show in `python -m crosscheck --list`.
"""

from __future__ import annotations

from crosscheck import Case, Tensor, register
from crosscheck.draw import away_from


def torch_fn(x):
    from softsign_layers.torch_softsign import softsign

    return softsign(x)


def torch_ref(x):
    import torch.nn.functional as F

    return F.softsign(x)


def jax_fn(x):
    from softsign_layers.jax_softsign import softsign

    return softsign(x)


def jax_ref(x):
    import jax

    return jax.nn.soft_sign(x)


def torch_module(dtype, device):
    from softsign_layers.torch_softsign import Softsign

    return Softsign()


def jax_module(dtype):
    from softsign_layers.jax_softsign import Softsign

    return Softsign()


def _case(batch, features):
    return Case(
        name="softsign",
        family="softsign",
        # Distinct sizes and a size-1 dim; inputs kept 0.1 away from the kink of |x| at 0,
        # where the second derivative jumps.
        inputs=(Tensor("input", (batch, 1, features), draw=away_from((0.0,), 0.1, scale=2.0)),),
        torch_fn=torch_fn,
        torch_ref=torch_ref,
        jax_fn=jax_fn,
        jax_ref=jax_ref,
        torch_module=torch_module,
        jax_module=jax_module,
        description=f"x ({batch}, 1, {features})",
    )


register(_case(3, 5), _case, {"batch": range(1, 4), "features": range(1, 7)})
