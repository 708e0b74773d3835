"""`python -m crosscheck port TORCH NNX --input SHAPE ...`: port one model's weights into the
other and check that the two agree (`check_port`); exit 0 when they do, 1 when not, 2 on bad
arguments."""

from __future__ import annotations

import argparse
import importlib
import inspect
import shlex
import sys

from ..options import UsageError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m crosscheck port",
        description="Port a torch model's weights into an NNX model (or back), then feed both identical random "
                    "inputs and compare outputs and every gradient, in each dtype.",
    )
    p.add_argument("torch", metavar="TORCH", help="module:name of a torch.nn.Module class or factory, called with no arguments")
    p.add_argument("nnx", metavar="NNX", help="module:name of an nnx.Module class or factory, called with rngs=nnx.Rngs(SEED)")
    p.add_argument("--input", action="append", required=True, metavar="SHAPE",
                   help="an input's shape in torch's layout: 4,1,5 (floats) or 3,4:int:7 (integers in [0, 7)); once per input")
    p.add_argument("--channels-last", action="store_true",
                   help="inputs and outputs of rank 3 or more are channels-first in torch, channels-last in NNX")
    p.add_argument("--map", action="append", metavar="TORCH_PATH=NNX_PATH",
                   help="pair a torch submodule with an nnx one where their paths differ (repeatable)")
    p.add_argument("--from", dest="source", choices=("torch", "nnx"), default="torch",
                   help="the model whose weights are ported into the other (default torch)")
    p.add_argument("--checkpoint", metavar="PATH", help="a torch state_dict (torch.save or *.safetensors) to load into the torch model first")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help="float64, float32, bfloat16 or float16 (repeatable; default all)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    p.add_argument("--trials", type=int, default=1, help="fresh random draws per dtype (default 1)")
    p.add_argument("--seed", type=int, default=0, help="fixes the models' initial weights and every draw (default 0)")
    return p


def _resolve(spec: str, arg: str):
    module, _, name = spec.partition(":")
    if not module or not name:
        raise UsageError(f"`{arg}` (={spec!r}) must look like package.module:Name")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise UsageError(f"`{arg}` (={spec!r}): cannot import {module!r}: {e}") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"`{arg}` (={spec!r}): {module!r} has no {name!r}")
        obj = getattr(obj, part)
    return obj


def _input(text: str, index: int, channels_last: bool):
    from .. import draw
    from ..layout import IDENTITY
    from ..registry import Tensor
    from ..layout import CHANNELS_LAST_ANY_RANK as CHANNELS_LAST

    shape, _, kind = text.partition(":")
    try:
        dims = tuple(int(n) for n in shape.split(","))
        high = int(kind.removeprefix("int:")) if kind else None
    except ValueError:
        raise UsageError(f"`--input` (={text!r}) must look like 4,1,5 or 3,4:int:7") from None
    if kind and not kind.startswith("int:") or any(n < 1 for n in dims) or (high is not None and high < 1):
        raise UsageError(f"`--input` (={text!r}) must look like 4,1,5 or 3,4:int:7, with positive sizes")
    name = f"input {index}"
    if high is not None:
        return Tensor(name, dims, kind="int", differentiable=False, draw=draw.integers(0, high))
    return Tensor(name, dims, layout=CHANNELS_LAST if channels_last else IDENTITY)


def _mapping(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        t, sep, n = pair.partition("=")
        if not sep:
            raise UsageError(f"`--map` (={pair!r}) must look like TORCH_PATH=NNX_PATH")
        out[t] = n
    return out


def _models(args):
    import torch
    from flax import nnx

    t_factory, n_factory = _resolve(args.torch, "TORCH"), _resolve(args.nnx, "NNX")
    torch.manual_seed(args.seed)
    torch_model = t_factory if isinstance(t_factory, torch.nn.Module) else t_factory()
    if isinstance(n_factory, nnx.Module):
        return torch_model, n_factory
    try:
        # A class's own `__init__`: nnx's metaclass hides it behind `(*args, **kwargs)`.
        takes_rngs = "rngs" in inspect.signature(n_factory.__init__ if isinstance(n_factory, type) else n_factory).parameters
    except (TypeError, ValueError):  # a callable without a signature
        takes_rngs = False
    return torch_model, n_factory(rngs=nnx.Rngs(args.seed)) if takes_rngs else n_factory()


def _selector(args) -> str:
    """The words after `python -m crosscheck` that rebuild this port (a check adds its dtype,
    device, seed and trials)."""
    words = ["port", args.torch, args.nnx]
    for text in args.input:
        words += ["--input", text]
    words += ["--channels-last"] * args.channels_last
    for pair in args.map or []:
        words += ["--map", pair]
    words += ["--from", "nnx"] * (args.source == "nnx")
    words += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    return shlex.join(words)


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from .. import configure

    configure()  # float64 before the models' first arrays
    from ..convert import ConversionError, load_state_dict, nnx_to_torch, torch_to_nnx
    from ..layout import IDENTITY
    from ..report import format_failures, format_summary
    from ..layout import CHANNELS_LAST_ANY_RANK as CHANNELS_LAST
    from ._check import check_port

    try:
        if args.checkpoint and args.source == "nnx":
            raise UsageError(f"`--checkpoint` (={args.checkpoint!r}) is a torch checkpoint: it needs `--from torch`")
        inputs = [_input(text, i, args.channels_last) for i, text in enumerate(args.input)]
        mapping = _mapping(args.map)
        torch_model, nnx_model = _models(args)
        if args.checkpoint:
            try:
                torch_model.load_state_dict(load_state_dict(args.checkpoint))
            except RuntimeError as e:  # torch's own message lists the missing and unexpected keys
                raise UsageError(f"`--checkpoint` (={args.checkpoint!r}) does not fit {args.torch}: {e}") from None
        if args.source == "torch":
            torch_to_nnx(torch_model, nnx_model, mapping=mapping)
        else:
            nnx_to_torch(nnx_model, torch_model, mapping=mapping)
        report = check_port(
            torch_model, nnx_model, inputs, dtypes=args.dtype, trials=args.trials, seed=args.seed, mapping=mapping,
            out_layouts=(CHANNELS_LAST if args.channels_last else IDENTITY,), selector=_selector(args), device=args.device,
        )
    except ConversionError as e:
        print(f"crosscheck: the port failed: {e}", file=sys.stderr)
        return 1
    except (UsageError, ValueError) as e:
        print(f"crosscheck: error: {e}", file=sys.stderr)
        return 2
    # The failures, a blank line, then the summary table, as the crosscheck prints them.
    print("\n\n".join(text for text in (format_failures(report), format_summary(report)) if text))
    return 0 if report.passed else 1
