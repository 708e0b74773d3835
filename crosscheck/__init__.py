"""crosscheck: hand-written backward passes in PyTorch and JAX, proven to agree.

Importing this package imports neither framework; they load when a run starts.
"""

from ._version import __version__ as __version__
from .registry import Case as Case, Tensor as Tensor, register as register

__all__ = ["Case", "Tensor", "__version__", "assert_agree", "check", "configure", "register", "run"]


def configure():
    """JAX as the crosscheck needs it (float64, the persistent compilation cache); a run does
    this itself. Call it first where JAX arrays are made before a run (a model to port)."""
    from .adapters.jax_adapter import configure as _configure

    _configure()


def run(*args, **kwargs):
    """See `crosscheck.session.run`."""
    from .session import run as _run

    return _run(*args, **kwargs)


def check(*args, **kwargs):
    """See `crosscheck.agree.check`: every check of one layer's hand-written backward."""
    from .agree import check as _check

    return _check(*args, **kwargs)


def assert_agree(*args, **kwargs):
    """See `crosscheck.agree.assert_agree`: `check`, raising AssertionError on a failure."""
    __tracebackhide__ = True
    from .agree import assert_agree as _assert_agree

    return _assert_agree(*args, **kwargs)
