"""crosscheck: hand-written backward passes in PyTorch and JAX, proven to agree.

Importing this package imports neither framework; they load when a run starts.
"""

from ._version import __version__ as __version__
from .registry import Case as Case, Tensor as Tensor, register as register

__all__ = ["Case", "Tensor", "__version__", "assert_agree", "check", "configure", "register", "run"]


def configure():
    """JAX as crosscheck needs it (float64, the persistent compilation cache), for good.

    `run`, `check` and the pytest plugin's items set these for the run only and put back what
    they found (`precision.run_settings`). Call this where they should stay: where JAX arrays
    for the harness are made outside a run (a model to port), or a test suite of checks.
    """
    from .adapters.jax_config import configure as _configure

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
