"""The proof of a port: a torch model and its NNX port fed identical random inputs, their
outputs and every gradient compared by the harness's comparator (`check_port`), from Python
or as `python -m crosscheck port mypkg:TorchModel mypkg:NnxModel`."""

from __future__ import annotations

from ..layout import CHANNELS_LAST_ANY_RANK
from ._check import check_port as check_port

# NCHW <-> NHWC at any rank, for `check_port`'s `in_layouts` and `out_layouts`.
CHANNELS_LAST = CHANNELS_LAST_ANY_RANK
