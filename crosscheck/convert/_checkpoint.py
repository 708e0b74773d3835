"""Checkpoints: a torch `state_dict` on disk, read into an NNX model and written from one.

Two formats, told apart by the file name: `*.safetensors` (the `safetensors` package: tensors
only, nothing executable) and anything else as `torch.save` wrote it, read with
`weights_only=True` so that loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import os

from ._model import Conversion, nnx_to_state_dict, state_dict_to_nnx

SAFETENSORS_SUFFIX = ".safetensors"


def _is_safetensors(path) -> bool:
    return os.fspath(path).endswith(SAFETENSORS_SUFFIX)


def load_state_dict(path) -> dict:
    """The `state_dict` in the file at `path` (safetensors or `torch.save`), on the CPU."""
    if _is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(os.fspath(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"`path` (={os.fspath(path)!r}) holds a {type(state).__name__}, not a state_dict of tensors")
    return state


def save_state_dict(state: dict, path) -> None:
    """Write `state` to `path`: safetensors for `*.safetensors`, else `torch.save`."""
    if _is_safetensors(path):
        from safetensors.torch import save_file

        # safetensors stores each tensor on its own: no views into a shared storage.
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, os.fspath(path))
        return
    import torch

    torch.save(dict(state), path)


def load_checkpoint(path, torch_model, nnx_model, *, mapping: dict[str, str] | None = None, strict: bool = True) -> Conversion:
    """Read a torch checkpoint of a model built like `torch_model` into `nnx_model` (in place).

    `torch_model` only tells the architecture (its weights are not read). Strict as
    `state_dict_to_nnx` is: a checkpoint entry that the model lacks, or the other way round,
    is an error naming it.
    """
    return state_dict_to_nnx(load_state_dict(path), torch_model, nnx_model, mapping=mapping, strict=strict)


def save_checkpoint(nnx_model, torch_model, path, *, mapping: dict[str, str] | None = None, strict: bool = True) -> Conversion:
    """Write `nnx_model`'s weights to `path` as a `state_dict` of `torch_model` (whose dtypes
    it takes); `torch_model` itself is left as it is."""
    state, conversion = nnx_to_state_dict(nnx_model, torch_model, mapping=mapping, strict=strict)
    save_state_dict(state, path)
    return conversion
