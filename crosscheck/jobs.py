"""`--jobs N`: the cases split over N processes, one `--shard k/N` each, merged in one report.

A process runs its cases one after another, and most of a run is Python (tracing, the
harness, torch's eager ops) holding one core. The shards split the registry round-robin, so
each gets a like share of every family.
"""

from __future__ import annotations

import glob
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

from . import registry
from .options import parse_jobs
from .results import CheckId, CheckResult, Report, read_json


# `--jobs auto` takes one process per this much memory (a shard holds about half of it), and
# at most MAX_AUTO_JOBS.
SHARD_MEMORY = 2 * 2**30
MAX_AUTO_JOBS = 8
# A shard's share of a GPU that `--jobs auto` counts on: the CUDA contexts of torch and JAX
# (JAX's preallocation off, see `shard_environment`) and the small arrays of one case run. An
# estimate, not a measurement: scripts/gpu_check.py records the card's peak memory in use.
GPU_SHARD = 2 * 2**30


def nvidia_smi(field: str) -> list[int] | None:
    """`field` (e.g. `memory.free`, in MiB) of every NVIDIA GPU, from nvidia-smi, so that the
    parent learns it without importing a framework; None where nvidia-smi is absent or fails."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        values = [int(x) for x in out.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return values or None


def count(text: str, device: str) -> int:
    """The number of processes `--jobs` (=`text`) asks for. `auto`: one per core, at most 8
    and one per 2 GiB of memory (a shard holds about 1 GiB). Where the run may use a GPU
    (`--device cuda`, or `auto` on a machine with an NVIDIA device) the shards share it, so
    also at most one per `GPU_SHARD` of the emptiest card's free memory, and 1 where
    nvidia-smi cannot tell that."""
    n = parse_jobs(text)
    if n is None:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else SHARD_MEMORY
        n = min(os.cpu_count() or 1, MAX_AUTO_JOBS, memory // SHARD_MEMORY)
        gpu = glob.glob("/dev/nvidia[0-9]*") and os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1")
        if device == "cuda" or (device == "auto" and gpu):
            free = nvidia_smi("memory.free")
            n = min(n, min(free) * 2**20 // GPU_SHARD) if free else 1
        return max(1, n)
    return n


def child_argv(args, k: int, n: int) -> list[str]:
    """The options of shard `k` of `n`: the run's own, and the shard (what reproduces it)."""
    argv = ["--device", args.device, "--trials", str(args.trials), "--shapes", str(args.shapes), "--shard", f"{k}/{n}"]
    argv += ["--seeds", args.seeds] if args.seeds else ["--seed", str(args.seed)]
    for module in args.cases or []:  # each shard starts afresh: outside cases register again
        argv += ["--cases", module]
    for layer in args.layer or []:
        argv += ["--layer", layer]
    for dtype in args.dtype or []:
        argv += ["--dtype", dtype]
    if args.no_program_cache:
        argv.append("--no-program-cache")
    return argv


class ProgressFile:
    """A shard's progress, one line per event appended to `path`: `total N`, then each case
    run's label, then `done`, which `_progress` reads back in the parent."""

    def __init__(self, path: str):
        self.path = path

    def _write(self, line: str):
        with open(self.path, "a") as f:
            f.write(line + "\n")

    def start(self, total):
        self._write(f"total {total}")

    def step(self, label):
        self._write(label)

    def stop(self):
        self._write("done")


def _progress(paths: list[str]) -> tuple[int, int, str]:
    """`(case runs done, case runs in all, the latest label)` over the shards' progress files
    (`ProgressFile`); a shard that has not started counts nothing yet."""
    done = total = 0
    label = "starting"
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        steps = [ln for ln in lines[1:] if ln != "done"]
        total += int(lines[0].split()[1]) if lines and lines[0].startswith("total ") else 0
        done += len(steps) - (1 if steps and lines[-1] != "done" else 0)  # the last one runs still
        label = steps[-1] if steps else label
    return done, total, label


def shard_environment(n: int) -> dict:
    """The environment of each of `n` shards; what the user set wins."""
    env = dict(os.environ)
    # Shards share one GPU: each JAX process would otherwise claim 75% of its memory at start.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # Each process's thread pools sized for the whole machine fight over it: a share of the
    # cores each halved a warm run's time on 2 cores (docs/bench.md, "Both cores: `--jobs 2`").
    threads = str(max(1, (os.cpu_count() or 1) // n))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, threads)
    return env


def run(args, command: str, progress=None) -> Report:
    """Every shard in its own process, at once; a shard that ends without its report becomes a
    failed check that says why, and the other shards' checks are kept. `progress` (`cli._Progress`)
    shows the shards' case runs, summed, while they run."""
    n = count(str(args.jobs), args.device)
    order = {c.name: i for i, c in enumerate(registry.select(args.layer))}
    env = shard_environment(n)
    with tempfile.TemporaryDirectory() as tmp:
        running = []
        for k in range(n):
            path = os.path.join(tmp, f"{k}.json")
            own = child_argv(args, k, n)
            cmd = [sys.executable, "-m", "crosscheck", *own, "--progress-file", f"{path}.progress", "--json", path]
            log = open(os.path.join(tmp, f"{k}.log"), "w")
            running.append((k, path, own, log, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)))
        files = [f"{path}.progress" for _, path, *_ in running]
        while progress is not None and any(r[-1].poll() is None for r in running):
            progress.show(*_progress(files))
            time.sleep(0.2)
        if progress is not None:
            progress.show(*_progress(files))
            progress.finish()
        results, first = [], None
        for k, path, own, log, proc in running:
            proc.wait()
            log.close()
            try:
                data = read_json(path)
            except (OSError, ValueError, TypeError) as e:
                with open(log.name) as f:
                    tail = f.read().strip().splitlines()[-12:]
                results.append(_shard_failure(k, n, args.device, own, proc.returncode, e, tail))
                continue
            first = first or data
            results += data["checks"]
    results.sort(key=lambda r: (order.get(r.layer, math.inf), registry.DTYPES.index(r.dtype) if r.dtype in registry.DTYPES else 0))
    first = first or {"seed": args.seed, "trials": args.trials, "device": args.device, "versions": {}, "shapes": args.shapes}
    return Report(results, first["seed"], first["trials"], first["device"], command, first["versions"], first["shapes"])


def _shard_failure(k, n, device, own, code, error, tail) -> CheckResult:
    repro = "python -m crosscheck " + shlex.join(own)
    ident = CheckId(f"shard {k}/{n}", "-", device, "setup", "-", "shard process")
    message = "\n".join([
        f"{ident.head(False)}: the process exited with status {code} and wrote no report ({type(error).__name__}: {error})",
        *("  " + line for line in tail),
        f"  Reproduce: {repro}",
    ])
    return CheckResult(id=ident, passed=False, message=message)
