"""A whole crosscheck run: cases x dtypes on one device, under full precision."""

from __future__ import annotations

import platform

from .options import check_dtypes, check_options, check_seed, check_shard, select_cases
from .results import CheckResult, Report
from .runner import run_case


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
    check_seed(seed)
    selected = cases if cases is not None else select_cases(layers)
    dtypes = check_dtypes(dtypes)
    if shard is not None:
        check_shard(shard)
        i, n = shard
        # Round-robin over the registry order: balanced, and the same split on every machine.
        selected = selected[i::n]
    runs = [(c, d) for c in selected for d in dtypes if d in c.dtypes]
    from . import adapters

    results: list[CheckResult] = []
    order = f"{shard[0]}of{shard[1]}" if shard else ""
    with adapters.opened(device, program_cache and cases is None, order) as (torch, jax, device):
        if progress is not None:
            progress.start(len(runs))
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
