"""The command line: exit codes 0/1/2, the JSON report, reproducibility."""

from __future__ import annotations

import json

import pytest

import crosscheck
from crosscheck import registry
from crosscheck.cli import main
from crosscheck.mutants import all_mutants

FAST = ["--dtype", "float64", "--trials", "2", "--device", "cpu"]


@pytest.fixture
def broken_case():
    """A registered case whose torch backward is wrong (a planted sigmoid bug)."""
    (m,) = [m for m in all_mutants() if m.name == "sigmoid/derivative-missing-factor"]
    case = m.apply().replace(name="sigmoid-broken", selector="")
    registry._REGISTRY[case.name] = case
    yield case
    del registry._REGISTRY[case.name]


def test_exit_0_when_every_check_passes(capsys):
    assert main(["--layer", "sigmoid", *FAST]) == 0
    out = capsys.readouterr().out
    assert "sigmoid" in out and " 0 failed" in out


def test_exit_1_and_report_written_when_a_check_fails(broken_case, tmp_path, capsys):
    path = tmp_path / "report.json"
    assert main(["--layer", "sigmoid-broken", "--layer", "reshape", *FAST, "--json", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED sigmoid-broken / float64 / cpu / grad / grad of input (torch vs jax)" in out
    assert "Reproduce: python -m crosscheck --layer sigmoid-broken --dtype float64 --device cpu --seed 0 --trials 2" in out
    report = json.loads(path.read_text())
    assert report["passed"] is False and report["seed"] == 0
    assert set(report["versions"]) >= {"torch", "jax", "flax", "numpy"}
    assert report["versions"]["crosscheck"] == crosscheck.__version__
    fields = {"layer", "dtype", "device", "check", "tensor", "passed", "max_abs_err", "max_rel_err", "atol", "rtol", "message"}
    assert all(fields <= set(c) for c in report["checks"])
    # one failing case does not hide the other
    assert {c["layer"] for c in report["checks"]} == {"sigmoid-broken", "reshape"}
    assert all(c["passed"] for c in report["checks"] if c["layer"] == "reshape")


@pytest.mark.parametrize(
    "args,words",
    [
        (["--layer", "nope"], ["Unknown layer: 'nope'", "linear", "sigmoid"]),
        (["--dtype", "float8"], ["Unknown dtype: 'float8'", "bfloat16"]),
        (["--trials", "0"], ["`--trials` (=0)"]),
        (["--device", "tpu"], ["`--device` (='tpu')"]),
        (["mutants", "--only", "nope"], ["Unknown mutant: 'nope'"]),
        (["--jobs", "0"], ["`--jobs` (=0) must be at least 1"]),
        (["--jobs", "many"], ["`--jobs` (='many') must be a number or auto"]),
        (["--jobs", "2", "--shard", "0/2"], ["`--jobs` (=2)", "`--shard` (=0/2)"]),
        (["--jobs", "2", "--layer", "nope"], ["Unknown layer: 'nope'"]),
        (["--jobs", "2", "--trials", "0"], ["`--trials` (=0)"]),
    ],
    ids=["layer", "dtype", "trials", "device", "mutant", "jobs", "jobs-word", "jobs-shard", "jobs-layer", "jobs-trials"],
)
def test_exit_2_on_usage_errors_with_the_valid_names(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err


def test_cuda_without_gpu_is_a_usage_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["--device", "cuda", "--layer", "sigmoid"]) == 2
    assert "`--device cuda` needs a GPU" in capsys.readouterr().err


def test_list_names_every_case(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for case in registry.all_cases():
        assert case.name in out


def test_same_seed_same_report_other_seed_other_draws(tmp_path):
    paths = [tmp_path / f"{i}.json" for i in range(3)]
    for p, seed in zip(paths, ["5", "5", "6"]):
        main(["--layer", "linear", *FAST, "--seed", seed, "--json", str(p)])
    a, b, c = (json.loads(p.read_text()) for p in paths)
    assert a.pop("command") != b.pop("command")  # they name different report paths
    assert a == b
    errs = lambda r: [x["max_abs_err"] for x in r["checks"]]  # noqa: E731
    assert errs(a) != errs(c)
    assert c["seed"] == 6 and "--seed 6" in c["command"]


def test_json_is_strict_even_with_nan_and_inf(tmp_path):
    (m,) = [m for m in all_mutants() if m.name == "linear/input-grad-nan"]
    case = m.apply().replace(name="linear-nan", selector="")
    registry._REGISTRY[case.name] = case
    try:
        path = tmp_path / "r.json"
        assert main(["--layer", "linear-nan", *FAST, "--json", str(path)]) == 1
    finally:
        del registry._REGISTRY[case.name]
    text = path.read_text()
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert "inf" in {c["max_abs_err"] for c in report["checks"]}


def test_jobs_split_the_cases_over_processes_into_the_same_report(tmp_path):
    run = ["--layer", "relu", "--layer", "linear", "--layer", "mse", *FAST, "--shapes", "1"]
    rows = []
    for jobs in ("1", "2"):
        path = tmp_path / f"jobs{jobs}.json"
        assert main([*run, "--jobs", jobs, "--json", str(path)]) == 0
        report = json.loads(path.read_text())
        rows.append([(c["layer"], c["dtype"], c["check"], c["tensor"], c["compared"], c["max_abs_err"]) for c in report["checks"]])
    assert rows[0] == rows[1]
    shown = []

    class Bar:  # stands in for the terminal's progress bar
        def show(self, done, total, label):
            shown.append((done, total))

        def finish(self):
            shown.append("finished")

    from crosscheck import cli, jobs, registry

    args = cli._parser().parse_args([*run, "--jobs", "2"])
    jobs.run(args, "python -m crosscheck", Bar())
    # One case run per selected case in float64 (seven since linear-nnx-options), over both shards.
    names = {c.name for c in registry.select(["relu", "linear", "mse"])}
    assert shown[-2:] == [(len(names), len(names)), "finished"]
    assert {r[0] for r in rows[1]} == names and len(names) >= 6


def test_jobs_auto_takes_one_process_per_core_and_2_gib_of_memory_and_of_a_gpu_it_may_use(monkeypatch):
    from crosscheck import jobs
    from crosscheck.jobs import count

    monkeypatch.setattr("os.cpu_count", lambda: 6)
    monkeypatch.setattr("glob.glob", lambda pattern: [])  # no NVIDIA device
    gib = {"SC_PHYS_PAGES": 24 * 2**18, "SC_PAGE_SIZE": 2**12}  # 24 GiB in 4 KiB pages
    monkeypatch.setattr("os.sysconf", lambda name: gib[name])
    free = {"memory.free": [80 * 1024]}  # MiB per card, as nvidia-smi gives them
    monkeypatch.setattr(jobs, "nvidia_smi", lambda field: free[field])
    assert count("auto", "cpu") == count("auto", "auto") == 6  # one per core
    assert count("auto", "cuda") == 6  # an 80 GiB card has room for more
    free["memory.free"] = [80 * 1024, 7 * 1024]  # the emptiest card, 7 GiB: one per 2 GiB
    assert count("auto", "cuda") == 3 and count("auto", "cpu") == 6
    free["memory.free"] = None  # nvidia-smi cannot tell
    assert count("auto", "cuda") == 1 and count("3", "cuda") == 3
    monkeypatch.setattr("glob.glob", lambda pattern: ["/dev/nvidia0"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert count("auto", "auto") == 1 and count("auto", "cpu") == 6
    free["memory.free"] = [5 * 1024]
    assert count("auto", "auto") == 2
    gib["SC_PHYS_PAGES"] = 3 * 2**18  # 3 GiB of host memory: one shard per 2 GiB
    assert count("auto", "cpu") == count("auto", "cuda") == 1


def test_shards_share_a_gpu_without_preallocation_unless_the_user_asks_for_it(monkeypatch):
    from crosscheck.jobs import shard_environment

    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    env = shard_environment(8)
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    assert shard_environment(8)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"


def test_a_shard_writes_its_progress_and_the_parent_sums_the_shards(tmp_path):
    from crosscheck.jobs import _progress

    path = tmp_path / "0.progress"
    assert main(["--layer", "relu", "--layer", "mse", *FAST, "--shapes", "1", "--progress-file", str(path)]) == 0
    assert path.read_text().splitlines() == ["total 2", "relu float64", "mse float64", "done"]
    running = tmp_path / "1.progress"  # a shard on its second of three case runs
    running.write_text("total 3\nsigmoid float64\ntanh float64\n")
    assert _progress([str(path), str(running), str(tmp_path / "not yet started")]) == (3, 5, "tanh float64")


def test_a_shard_that_dies_is_a_failed_check_and_the_others_are_kept(tmp_path, monkeypatch, capsys):
    from crosscheck import jobs

    real = jobs.child_argv

    def argv(args, k, n):  # shard 1 gets an option it refuses, and writes nothing
        return real(args, k, n) + (["--shapes", "0"] if k == 1 else [])

    monkeypatch.setattr(jobs, "child_argv", argv)
    path = tmp_path / "report.json"
    assert main(["--layer", "relu", "--layer", "mse", *FAST, "--jobs", "2", "--json", str(path)]) == 1
    report = json.loads(path.read_text())
    layers = {c["layer"] for c in report["checks"]}
    assert "relu" in layers and "shard 1/2" in layers
    out = capsys.readouterr().out
    assert "FAILED shard 1/2 / - / cpu / setup / - (shard process): the process exited with status 2" in out and "`--shapes` (=0)" in out
    assert "Reproduce: python -m crosscheck --device cpu" in out and "--shard 1/2 --seed 0 --layer relu" in out
    assert "--json" not in out and "--progress-file" not in out  # the parent's plumbing, not the shard's
