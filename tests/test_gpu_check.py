"""scripts/gpu_check.py, the whole GPU check in one command, tried on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from scripts import gpu_check

SCRIPT = Path(gpu_check.__file__)


def _summary(out: Path) -> list[list[str]]:
    """Each line of summary.txt as (part, verdict)."""
    return [line.split()[:2] for line in (out / "summary.txt").read_text().splitlines()]


def test_every_part_runs_on_cpu_and_writes_its_reports(tmp_path):
    out = tmp_path / "out"
    argv = ["--device", "cpu", "--out", str(out), "--layer", "relu", "--dtype", "float32", "--jobs", "1"]
    proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _summary(out) == [[part, "passed"] for part in gpu_check.PARTS]
    assert all(line in proc.stdout for line in (out / "summary.txt").read_text().splitlines())
    written = ["cold.json", "cold.png", "cold.xml", "env.txt", "log.txt", "soak.json", "summary.txt", "warm.json"]
    assert sorted(p.name for p in out.iterdir()) == written  # the device machine returns 8 files at most
    for name, seed in (("cold", 0), ("warm", 0), ("soak", "0:4")):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["passed"] and report["seed"] == seed and report["device"] == "cpu"
        assert {(c["layer"], c["dtype"]) for c in report["checks"]} == {("relu", "float32")}
    assert "torch " in (out / "env.txt").read_text()
    assert "PASS placement" in (out / "log.txt").read_text()


def test_a_part_that_cannot_start_in_what_is_left_of_the_budget_is_listed_as_skipped(tmp_path):
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--budget", "1"]) == 1
    assert _summary(tmp_path) == [[part, "skipped"] for part in gpu_check.PARTS]


def test_the_jobs_part_times_one_process_against_several_each_cold(tmp_path, monkeypatch):
    args = gpu_check._parser().parse_args(["--device", "cpu", "--out", str(tmp_path), "--jobs", "2"])
    check = gpu_check.GpuCheck(args, tmp_path)
    ran = []

    def crosscheck(timeout, cache, jobs, *options, report=None):
        ran.append((cache, jobs, options))
        return ("passed" if jobs == "2" else "TIMED-OUT"), 1.5, f"{jobs} processes"

    monkeypatch.setattr(check, "crosscheck", crosscheck)
    verdict, detail = check.jobs(100)
    assert verdict == "TIMED-OUT" and "--jobs 2 passed in 1.5 s" in detail and "--jobs 1 TIMED-OUT" in detail
    subset = ("--layer", "linear", "--layer", "conv", "--dtype", "float32")
    assert ran == [("cache-jobs2", "2", subset), ("cache-jobs1", "1", subset)]  # a fresh cache each
    ran.clear()
    check.processes = 1  # `--jobs` takes one process here: the one run, nothing to compare
    assert check.jobs(100)[0] == "TIMED-OUT" and [r[1] for r in ran] == ["1"]  # the verdict of that one run


def test_a_command_past_its_timeout_is_killed_with_the_processes_it_started(tmp_path):
    pid = tmp_path / "pid"
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "open(sys.argv[1], 'w').write(str(p.pid)); time.sleep(120)")
    with open(tmp_path / "log", "w") as log:
        status, seconds, peak = gpu_check.run_command([sys.executable, "-c", code, str(pid)], 3, log, dict(os.environ))
    assert status is None and peak is None

    def state():
        try:
            with open(f"/proc/{pid.read_text()}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return "gone"

    # SIGKILL is delivered when the kernel next schedules the process: read at once, it was
    # still running ('R') in 1 of 2015 tests under load. A process left alive sleeps ('S').
    deadline = time.monotonic() + 10
    while state() not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state() in ("gone", "Z")  # killed (a zombie until its new parent reaps it)
