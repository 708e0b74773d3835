"""The whole GPU check in one command, for a machine with torch, JAX and Flax and no registry.

    python scripts/gpu_check.py --device cuda --out DIR [--budget SECONDS]

Runs its parts in order of value, each in processes of its own with a timeout taken from what
is left of the budget, and writes under DIR (8 files at most): `summary.txt`, one line per
part, appended as each part ends (and printed); `env.txt`; `log.txt`, the output of every
part; `cold.json`, `cold.xml`, `cold.png` (where matplotlib is installed), `warm.json` and
`soak.json`. It needs what the crosscheck needs and nothing else: not pytest, not matplotlib
(no plot without it). What each part does, and how long it takes: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: its folder, not the repository, is on the path
    sys.path.insert(0, str(ROOT))

from crosscheck import registry  # noqa: E402  (numpy only: no framework in this process)
from crosscheck.jobs import count, nvidia_smi  # noqa: E402
from crosscheck.options import check_dtypes  # noqa: E402
from crosscheck.results import read_json, worst_ratio  # noqa: E402

BUDGET = 450
# A part needs this much at least: each of its processes starts both frameworks first.
LEAST = 15
# The most the quick parts may take, so that one that hangs leaves the budget to the runs.
CAPS = {"env": 90, "checks": 180}
PARTS = ["env", "checks", "cold", "warm", "soak", "jobs"]
# Part `jobs` compares one process with several on these, cold, unless `--layer` chooses.
JOBS_LAYERS, JOBS_DTYPES = ["linear", "conv"], ["float32"]


def run_command(argv: list[str], timeout: float, output, env: dict, watch_gpu: bool = False):
    """`argv` in a process group of its own, its output appended to the file `output`; the
    whole group (shards included) is killed at `timeout` seconds. Returns the exit status
    (None when it timed out), the seconds it took, and the most GPU memory in use meanwhile
    in MiB (`watch_gpu`, where nvidia-smi tells; else None)."""
    output.write(f"\n$ {shlex.join(argv)}\n")
    output.flush()
    start, peak = time.monotonic(), None
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        left = timeout - (time.monotonic() - start)
        try:
            code = proc.wait(timeout=max(0.01, min(left, 1.0) if watch_gpu else left))
            break
        except subprocess.TimeoutExpired:
            used = nvidia_smi("memory.used") if watch_gpu else None
            peak = max(peak or 0, *used) if used else peak
            if time.monotonic() - start >= timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
                break
    return code, time.monotonic() - start, peak


def _verdict(code) -> str:
    return "passed" if code == 0 else ("TIMED-OUT" if code is None else f"FAILED({code})")


def _report(path: Path) -> str:
    """The checks in the report at `path`, those failed and the worst error/allowance per dtype."""
    try:
        checks = read_json(str(path))["checks"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no report in {path.name}"
    failed = [c for c in checks if not c.passed]
    worst = ", ".join(f"{d} {worst_ratio([c for c in checks if c.dtype == d]):.3g}"
                      for d in registry.DTYPES if any(c.dtype == d for c in checks))
    text = f"{len(checks)} checks, {len(failed)} failed; worst error/allowance: {worst}"
    if failed:
        runs = sorted({f"{c.layer} {c.dtype}" for c in failed})
        text += f"; failed in {len(runs)} case runs: {', '.join(runs[:6])}{' ...' if len(runs) > 6 else ''}"
    return text


class GpuCheck:
    """The parts (methods named as in PARTS), what they share, and the summary they append to."""

    def __init__(self, args, scratch: Path):
        self.args, self.out, self.scratch = args, Path(args.out).resolve(), scratch  # the children run in ROOT
        self.deadline = time.monotonic() + args.budget
        self.layers = [x for layer in args.layer or [] for x in ("--layer", layer)]
        self.selection = self.layers + [x for dtype in args.dtype or [] for x in ("--dtype", dtype)]
        self.processes = count(args.jobs, args.device)
        (self.out / "summary.txt").write_text("")  # appended to as the parts end, as log.txt is
        (self.out / "log.txt").write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}: {self.processes} processes "
                                          f"for --jobs {args.jobs}, a budget of {args.budget:.0f} s\n")
        self.environ = dict(os.environ)
        # Several processes share the card (`--jobs`): JAX would take 75% of it in the first.
        self.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def command(self, argv, timeout, cache: str, output: str = "log.txt"):
        env = {**self.environ, "CROSSCHECK_JAX_CACHE": str(self.scratch / cache)}  # a fresh folder is a cold cache
        with open(self.out / output, "a") as f:
            return run_command(argv, timeout, f, env, watch_gpu=self.args.device != "cpu")

    def crosscheck(self, timeout, cache, jobs, *options, report=None):
        """A crosscheck run in `jobs` processes: its verdict, seconds and what it found."""
        argv = [sys.executable, "-m", "crosscheck", "--device", self.args.device, "--jobs", jobs, *options]
        code, seconds, peak = self.command(argv, timeout, cache)
        n = count(jobs, self.args.device)
        found = [f"{n} process{'es' if n > 1 else ''}"]
        found += [_report(self.out / report)] if report else []
        found += [f"GPU memory in use at most {peak} MiB"] if peak is not None else []
        return _verdict(code), seconds, "; ".join(found)

    def summarise(self, part: str, verdict: str, seconds: float, detail: str) -> bool:
        line = f"{part:<7} {verdict:<10} {seconds:6.1f} s  {detail}"
        with open(self.out / "summary.txt", "a") as f:
            f.write(line + "\n")
        print(line, flush=True)
        with open(self.out / "log.txt", "a") as f:
            f.write(f"\n== {line}\n")
        return verdict == "passed"

    def run(self, parts) -> bool:
        ok = True
        for part in parts:
            left = self.left()
            if left < LEAST:
                ok = self.summarise(part, "skipped", 0.0, f"{max(left, 0):.0f} s of the {self.args.budget:.0f} s budget left; "
                                                          f"a part needs {LEAST} s at least") and ok
                continue
            timeout = min(left, CAPS.get(part, left))
            print(f"{part}: started, {timeout:.0f} s at most", flush=True)
            start = time.monotonic()
            verdict, detail = getattr(self, part)(timeout)
            ok = self.summarise(part, verdict, time.monotonic() - start, detail) and ok
        return ok

    # -- the parts, most valuable first: each takes its timeout and returns (verdict, detail)
    def env(self, timeout):
        start = time.monotonic()
        with open(self.out / "env.txt", "w") as f:
            if shutil.which("nvidia-smi"):
                run_command(["nvidia-smi"], min(timeout / 2, 30), f, self.environ)
        argv = [sys.executable, "-m", "scripts.device_checks", "env", "--device", self.args.device]
        code, _, _ = self.command(argv, timeout - (time.monotonic() - start), "checks", "env.txt")
        return _verdict(code), "env.txt"

    def checks(self, timeout):
        results = self.scratch / "checks.json"
        argv = [sys.executable, "-m", "scripts.device_checks", "checks", "--device", self.args.device,
                "--results", str(results), *self.layers]
        code, _, _ = self.command(argv, timeout, "checks")
        try:
            with open(results) as f:
                done = json.load(f)
        except (OSError, ValueError):
            done = []
        detail = ", ".join(f"{r['name']} {'passed' if r['passed'] else 'FAILED: ' + ' '.join(r['note'].split())[:200]} "
                           f"({r['seconds']} s)" for r in done)
        return _verdict(code), detail or "no check finished; see log.txt"

    def cold(self, timeout):
        plot = ["--plot", str(self.out / "cold.png")] if importlib.util.find_spec("matplotlib") else []
        verdict, _, found = self.crosscheck(timeout, "cache", self.args.jobs, *self.selection, "--json",
                                            str(self.out / "cold.json"), "--junit", str(self.out / "cold.xml"), *plot,
                                            report="cold.json")
        return verdict, found + ("" if plot else "; no plot: matplotlib is not installed")

    def warm(self, timeout):
        verdict, _, found = self.crosscheck(timeout, "cache", self.args.jobs, *self.selection,
                                            "--json", str(self.out / "warm.json"), report="warm.json")
        return verdict, found

    def soak(self, timeout):
        # Four seeds batched are 32 trials a program: new programs, so this run is cold again;
        # the declared shapes only, to fit the budget.
        verdict, _, found = self.crosscheck(timeout, "cache", self.args.jobs, "--seeds", "0:4", "--shapes", "1",
                                            *self.selection, "--json", str(self.out / "soak.json"), report="soak.json")
        return verdict, f"seeds 0:4, declared shapes: {found}"

    def jobs(self, timeout):
        subset = [x for layer in self.args.layer or JOBS_LAYERS for x in ("--layer", layer)]
        subset += [x for dtype in self.args.dtype or JOBS_DTYPES for x in ("--dtype", dtype)]
        end, verdicts, found = time.monotonic() + timeout, [], []
        # The several first: where the budget ends in the one-process run, that it took longer is known.
        for jobs in (self.args.jobs, "1") if self.processes > 1 else ("1",):  # else: nothing to compare
            left = min(end - time.monotonic(), self.left())
            if left < LEAST:
                verdicts.append("skipped")
                found.append(f"--jobs {jobs} skipped: {max(left, 0):.0f} s left")
                continue
            verdict, seconds, what = self.crosscheck(left, f"cache-jobs{jobs}", jobs, *subset)  # each cold
            verdicts.append(verdict)
            found.append(f"--jobs {jobs} {verdict} in {seconds:.1f} s ({what})")
        verdict = next((v for v in verdicts if v != "passed"), "passed")
        return verdict, f"cold, {shlex.join(subset)}: " + "; ".join(found)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda or cpu (default cuda; cpu tries the command out)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder for every file written (made if missing)")
    p.add_argument("--budget", type=float, default=BUDGET, metavar="SECONDS",
                   help=f"the time for all parts; a part that cannot start in what is left is skipped (default {BUDGET})")
    p.add_argument("--jobs", default="auto", metavar="N", help="processes of the crosscheck runs (default auto)")
    p.add_argument("--part", action="append", choices=PARTS, help="run only these parts, in their order (repeatable)")
    p.add_argument("--layer", action="append", metavar="NAME", help="run every part on these cases only (repeatable)")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help="run the crosscheck parts in these dtypes only (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.device not in ("cpu", "cuda"):
        p.error(f"`--device` (={args.device!r}) must be cuda or cpu")
    if args.budget <= 0:
        p.error(f"`--budget` (={args.budget}) must be positive")
    try:  # what every run would refuse, refused once here with the crosscheck's own message
        count(args.jobs, args.device)
        registry.select(args.layer)
        check_dtypes(args.dtype)
    except ValueError as e:
        p.error(str(e))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))  # program caches: outside the folder that comes back
    start = time.monotonic()
    try:
        check = GpuCheck(args, scratch)
        ok = check.run([part for part in PARTS if part in (args.part or PARTS)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"all parts: {'passed' if ok else 'NOT all passed'} in {time.monotonic() - start:.1f} s; see {args.out}/summary.txt")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
