"""What a run may be asked for: every option's validation, and the device, in one place.

The CLI, `--jobs` (before any shard starts) and the Python API (`crosscheck.run`) refuse the
same things with the same messages. Nothing here imports a framework but `resolve_device`.
"""

from __future__ import annotations

from . import registry

DEVICES = ("auto", "cpu", "cuda")


class UsageError(ValueError):
    """Bad arguments: the CLI exits with status 2 and this message."""


def check_options(trials: int, shapes: int, device: str) -> None:
    """Refuse what no run can take (before any framework is imported)."""
    if trials < 1:
        raise UsageError(f"`--trials` (={trials}) must be at least 1")
    if shapes < 1:
        raise UsageError(f"`--shapes` (={shapes}) must be at least 1")
    check_device(device)


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise UsageError(f"`--device` (={device!r}) must be one of {', '.join(DEVICES)}")


def check_dtypes(dtypes: list[str] | None) -> list[str]:
    """`dtypes` in the registry's order (all of them when none are given)."""
    unknown = [d for d in dtypes or [] if d not in registry.DTYPES]
    if unknown:
        raise UsageError(f"Unknown dtype: {', '.join(map(repr, unknown))}. Valid names: {', '.join(registry.DTYPES)}")
    return [d for d in registry.DTYPES if d in dtypes] if dtypes else list(registry.DTYPES)


def select_cases(layers: list[str] | None) -> list:
    """The registered cases that `layers` (case or family names; None: all) name."""
    try:
        return registry.select(layers)
    except ValueError as e:
        raise UsageError(str(e)) from None


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard I/N`, checked: 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"`--shard` (={text!r}) must look like I/N, e.g. 0/4") from None
    check_shard((i, n))
    return i, n


def check_shard(shard: tuple[int, int]) -> None:
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"`--shard` (={i}/{n}) needs 0 <= I < N")


def parse_seeds(text: str) -> range:
    """`--seeds A:B`: the seeds A..B-1."""
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"`--seeds` (={text!r}) must look like A:B, e.g. 0:1000") from None
    if not 0 <= a < b:
        raise UsageError(f"`--seeds` (={text!r}) needs 0 <= A < B")
    return range(a, b)


def check_seed(seed) -> None:
    if not isinstance(seed, int) and len(seed) == 0:
        raise UsageError(f"`--seeds` (={seed}) is empty")


def parse_jobs(text: str) -> int | None:
    """`--jobs N` as a number, or None for `auto` (which `jobs.count` sizes to the machine)."""
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"`--jobs` (={text!r}) must be a number or auto") from None
    if n < 1:
        raise UsageError(f"`--jobs` (={n}) must be at least 1")
    return n


def resolve_device(device: str, torch, jax) -> str:
    """`device` (auto, cpu or cuda) as the run will use it, given the two adapters: `auto` is
    cuda where both frameworks see a GPU; `cuda` where one does not is a usage error."""
    check_device(device)
    if device == "cpu":
        return "cpu"
    t_gpu, j_gpu = torch.has_gpu(), jax.has_gpu()
    if device == "auto":
        return "cuda" if t_gpu and j_gpu else "cpu"
    if not (t_gpu and j_gpu):
        raise UsageError(
            f"`--device cuda` needs a GPU that both frameworks see: torch sees {'one' if t_gpu else 'none'}, "
            f"jax sees {'one' if j_gpu else 'none'} (install the CUDA builds; see README, 'CUDA builds')"
        )
    return "cuda"
