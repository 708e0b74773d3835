"""The proof of a port: a torch model and its NNX port fed identical random inputs, their
outputs and every gradient compared by the harness's comparator (`check_port`), from Python
or as `python -m crosscheck port mypkg:TorchModel mypkg:NnxModel`."""

from __future__ import annotations

from ._check import CHANNELS_LAST as CHANNELS_LAST, check_port as check_port
