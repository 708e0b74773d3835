"""crosscheck: hand-written backward passes in PyTorch and JAX, proven to agree.

Importing this package imports neither framework; they load when a run starts.
"""

from .registry import Case as Case, Tensor as Tensor, register as register

__all__ = ["Case", "Tensor", "register", "run"]


def run(*args, **kwargs):
    """See `crosscheck.session.run`."""
    from .session import run as _run

    return _run(*args, **kwargs)
