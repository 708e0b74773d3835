"""crosscheck: hand-written backward passes in PyTorch and JAX, proven to agree.

Importing this package imports neither framework; they load when a run starts.
"""

from .registry import Case as Case, Tensor as Tensor, register as register

__all__ = ["Case", "Tensor", "configure", "register", "run"]


def configure():
    """JAX as the crosscheck needs it (float64, the persistent compilation cache); a run does
    this itself. Call it first where JAX arrays are made before a run (a model to port)."""
    from .adapters.jax_adapter import configure as _configure

    _configure()


def run(*args, **kwargs):
    """See `crosscheck.session.run`."""
    from .session import run as _run

    return _run(*args, **kwargs)
