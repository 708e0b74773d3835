"""A whole crosscheck run: cases x dtypes on one device, under full precision."""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field

from . import registry
from .runner import CheckResult, run_case


class UsageError(ValueError):
    """Bad arguments: the CLI exits with status 2 and this message."""


def _adapters():
    from . import adapters

    return adapters.get("torch"), adapters.get("jax")


def check_options(trials: int, shapes: int, device: str) -> None:
    """Refuse what no run can take (before any framework is imported)."""
    if trials < 1:
        raise UsageError(f"`--trials` (={trials}) must be at least 1")
    if shapes < 1:
        raise UsageError(f"`--shapes` (={shapes}) must be at least 1")
    _check_device(device)


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"`--device` (={device!r}) must be one of auto, cpu, cuda")


def resolve_device(device: str, torch=None, jax=None) -> str:
    _check_device(device)
    if device == "cpu":
        return "cpu"
    if torch is None:
        torch, jax = _adapters()
    t_gpu, j_gpu = torch.has_gpu(), jax.has_gpu()
    if device == "auto":
        return "cuda" if t_gpu and j_gpu else "cpu"
    if not (t_gpu and j_gpu):
        raise UsageError(
            f"`--device cuda` needs a GPU that both frameworks see: torch sees {'one' if t_gpu else 'none'}, "
            f"jax sees {'one' if j_gpu else 'none'} (install the CUDA builds; see README, 'CUDA builds')"
        )
    return "cuda"


def check_dtypes(dtypes: list[str] | None) -> list[str]:
    unknown = [d for d in dtypes or [] if d not in registry.DTYPES]
    if unknown:
        raise UsageError(f"Unknown dtype: {', '.join(map(repr, unknown))}. Valid names: {', '.join(registry.DTYPES)}")
    return [d for d in registry.DTYPES if d in dtypes] if dtypes else list(registry.DTYPES)


@dataclass
class Report:
    results: list[CheckResult]
    seed: int | str  # "A:B" for a soak over seeds A..B-1
    trials: int
    device: str
    command: str
    versions: dict = field(default_factory=dict)
    shapes: int = 1
    # Checks that could not run, each with why (`crosscheck.check` without one side or a reference).
    not_run: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "seed": self.seed,
            "trials": self.trials,
            "shapes": self.shapes,
            "device": self.device,
            "command": self.command,
            "versions": self.versions,
            "checks": [r.to_dict() for r in self.results],
            "not_run": self.not_run,
        }

    def write_json(self, path: str) -> None:
        """Strict JSON: non-finite numbers (a relative error against an exact 0 is inf) are
        written as the strings "inf", "-inf" and "nan"."""
        with open(path, "w") as f:
            json.dump(_finite(self.to_dict()), f, indent=1, allow_nan=False)
            f.write("\n")


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def versions(torch, jax) -> dict:
    import flax
    import numpy

    from ._version import __version__

    return {
        "crosscheck": __version__,
        "python": platform.python_version(),
        "torch": torch.version(),
        "jax": jax.version(),
        "jax_devices": len(jax.devices),
        "flax": flax.__version__,
        "numpy": numpy.__version__,
    }


def run(
    layers: list[str] | None = None,
    dtypes: list[str] | None = None,
    device: str = "cpu",
    trials: int = 8,
    seed: int | range | list[int] = 0,
    command: str = "",
    cases: list | None = None,
    on_case=None,
    shard: tuple[int, int] | None = None,
    progress=None,
    shapes: int = 1,
    program_cache: bool = False,
) -> Report:
    """Run every check of the selected cases; `cases` (Case objects) overrides `layers`.

    `seed` may be a range of seeds (a soak): they run batched, as `trials x len(seeds)` trials.
    `shapes` is the number of shape buckets per case (`registry.buckets`), each with `trials`.
    `program_cache` keeps compiled JAX programs between runs (`JaxAdapter.use_programs`); it
    applies only to registered cases (not to `cases` given here), which no one has replaced.
    """
    check_options(trials, shapes, device)
    if not isinstance(seed, int) and len(seed) == 0:
        raise UsageError(f"`--seeds` (={seed}) is empty")
    try:
        selected = cases if cases is not None else registry.select(layers)
    except ValueError as e:
        raise UsageError(str(e)) from None
    dtypes = check_dtypes(dtypes)
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise UsageError(f"`--shard` (={i}/{n}) needs 0 <= I < N")
        # Round-robin over the registry order: balanced, and the same split on every machine.
        selected = selected[i::n]
    runs = [(c, d) for c in selected for d in dtypes if d in c.dtypes]
    torch, jax = _adapters()
    device = resolve_device(device, torch, jax)
    torch.set_device(device)
    jax.set_device(device)
    jax.use_programs(program_cache and cases is None, f"{shard[0]}of{shard[1]}" if shard else "")
    from .precision import full_precision

    results: list[CheckResult] = []
    if progress is not None:
        progress.start(len(runs))
    with full_precision():
        for case, dtype in runs:
            if progress is not None:
                progress.step(f"{case.name} {dtype}")
            out = run_case(case, dtype, device, trials, seed, torch, jax, shapes)
            results.extend(out)
            if on_case:
                on_case(case, dtype, out)
    if progress is not None:
        progress.stop()
    seeds = seed if isinstance(seed, int) else f"{seed[0]}:{seed[-1] + 1}"
    return Report(results, seeds, trials, device, command, versions(torch, jax), shapes)
