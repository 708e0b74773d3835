"""Sessions: `nox -s crosscheck`, `nox -s tests`, `nox -s mutants`, `nox -s soak`, `nox -s coverage`,
`nox -s lowest`, `nox -s example`, `nox --no-venv -s gpu`.

Dependencies are declared once, in pyproject.toml; `constraints.txt` pins torch to the CPU
wheel. With `--no-venv` (`nox --no-venv -s crosscheck`) nothing is installed and the session
runs in the current environment: a GPU machine that already has CUDA builds of torch and jax.
"""

from __future__ import annotations

import json
import os
import re
import tomllib

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["tests"]


def install(session: nox.Session, extras: str = "") -> None:
    """Install the project (with `extras`), or check the environment under `--no-venv`."""
    if session.venv_backend == "none":
        # No virtualenv: session.install would refuse. Run from this checkout (the packages
        # import from the repository root) with the frameworks already installed.
        session.log("--no-venv: using the current environment; it needs torch, jax, flax and ml_dtypes")
        session.run("python", "-c", "import torch, jax, flax, ml_dtypes", silent=True)
        return
    target = f".[{extras}]" if extras else "."
    session.install("-c", "constraints.txt", "-e", target)


@nox.session
def crosscheck(session: nox.Session) -> None:
    """Run the crosscheck of every layer (arguments go to `python -m crosscheck`)."""
    install(session, "report")
    # `--jobs auto`: one process per core, at most 8 and one per 2 GiB of memory, and on a GPU
    # one per 2 GiB free on the card, which the processes share with JAX's preallocation off
    # (see docs/gpu.md). Faster than one process on CPU (see docs/bench.md).
    session.run("python", "-m", "crosscheck", *(session.posargs or ["--device", "auto", "--jobs", "auto"]))


@nox.session
def gpu(session: nox.Session) -> None:
    """The whole GPU check in one go (scripts/gpu_check.py; run with --no-venv: -- --out DIR)."""
    install(session)
    session.run("python", "scripts/gpu_check.py", *(session.posargs or ["--out", "gpu-check"]))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (arguments go to pytest)."""
    install(session, "test")
    # CI machines have 2 cores and a time limit: spread the tests over both (pytest-xdist).
    # Elsewhere the default stays serial: with GPUs, every worker would claim GPU memory.
    default = ["-q", "-n", "2"] if os.environ.get("CI") else ["-q"]
    session.run("python", "-m", "pytest", *(session.posargs or default))


@nox.session
def bench(session: nox.Session) -> None:
    """Time the crosscheck against gradcheck and check_grads; writes reports/bench.{json,png}."""
    install(session, "report")
    session.run("python", "-m", "crosscheck.bench", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Run every planted backward bug in each dtype; the kill rate per dtype (docs/mutants.md)."""
    install(session)
    # Each dtype judged on its own, as a user who trains only in it would be; the session fails
    # where a mutant survives every dtype or an unexpected check kills it. Posargs replace this.
    every = ["--dtype", "float64", "--dtype", "float32", "--dtype", "bfloat16", "--dtype", "float16"]
    session.run("python", "-m", "crosscheck", "mutants", *(session.posargs or every))


SOAK_REPORT = os.path.join("reports", "soak.json")


@nox.session
def soak(session: nox.Session) -> None:
    """The tolerances' soak: seeds 0..999, four dtypes, four shape buckets; docs/tolerances.md's table."""
    install(session)
    # One trial per seed, every dtype (the default), the module path included; long on a small
    # machine (docs/tolerances.md). Posargs replace these all: a slice names its own
    # `--shapes 4 --trials 1`, e.g. `-- --layer gelu --seeds 0:50 --shapes 4 --trials 1`.
    args = session.posargs or ["--seeds", "0:1000", "--shapes", "4", "--trials", "1", "--jobs", "auto"]
    os.makedirs("reports", exist_ok=True)
    if os.path.exists(SOAK_REPORT):
        os.remove(SOAK_REPORT)  # a stale report must not stand in for this run's
    try:
        # The report is written even when checks fail; the table follows, then the failure.
        session.run("python", "-m", "crosscheck", *args, "--json", SOAK_REPORT)
    finally:
        if os.path.exists(SOAK_REPORT):
            session.run("python", "scripts/soak_table.py", "--target", "0.5", SOAK_REPORT)


# The backward code: autograd.Function `backward`s (AppendRowFunction's for attention's appended
# rows among them), custom_vjp `*_bwd` rules (`_append_bwd` too) and the gradient helpers they
# call (named `*_backward`, `*_grad(s)`, norm's `_xhat_vjp` and the JAX pad's `_gathered_sum`).
BACKWARD = re.compile(r"(^|\.)backward$|_backward$|_bwd$|_grads?$|^_xhat_vjp$|^_gathered_sum$")


def _backward_coverage(session: nox.Session, path: str) -> None:
    """Log the coverage of the backward functions in the JSON report at `path`, with what they miss."""
    with open(path) as f:
        files = json.load(f)["files"]
    lines = branches = covered_lines = covered_branches = 0
    for name, data in sorted(files.items()):
        for function, info in data["functions"].items():
            if not BACKWARD.search(function):
                continue
            s = info["summary"]
            lines, covered_lines = lines + s["num_statements"], covered_lines + s["covered_lines"]
            branches, covered_branches = branches + s["num_branches"], covered_branches + s["covered_branches"]
            missed = [f"line {n} not run" for n in info["missing_lines"]]
            missed += [f"branch {a}->{b if b > 0 else 'exit'} not taken" for a, b in info["missing_branches"]]
            if missed:
                session.log(f"{name} {function}: {', '.join(missed)}")
    session.log(f"backward functions: {covered_lines} of {lines} lines, {covered_branches} of {branches} branches")


@nox.session
def coverage(session: nox.Session) -> None:
    """Line and branch coverage of torch_layers/ and jax_layers/ under the crosscheck (float64, float32)."""
    install(session, "coverage")
    env = {"COVERAGE_FILE": os.path.join("reports", ".coverage")}
    os.makedirs("reports", exist_ok=True)
    packages = ["--include=torch_layers/*,jax_layers/*"]
    # One process (coverage.py does not follow `--jobs` shards), and no program cache: a JAX
    # program loaded from it is never traced, so its backward's lines would not run.
    args = session.posargs or ["--dtype", "float64", "--dtype", "float32"]
    session.run(
        "python", "-m", "coverage", "run", "--branch", "--source=torch_layers,jax_layers",
        "-m", "crosscheck", "--jobs", "1", "--no-program-cache", *args, env=env,
    )
    session.run("python", "-m", "coverage", "report", "--show-missing", *packages, env=env)
    session.run("python", "-m", "coverage", "json", "-q", "-o", "reports/coverage.json", *packages, env=env)
    _backward_coverage(session, os.path.join("reports", "coverage.json"))


def lowest_pins(torch: bool = False) -> list[str]:
    """Every dependency at the lower bound pyproject.toml declares (`name>=v` as `name==v`), and
    jaxlib at jax's; torch too where `torch`, else left to constraints.txt's pin."""
    with open("pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    pins = [d.replace(">=", "==") for d in deps if torch or not d.startswith("torch")]
    jax = next(p for p in pins if p.startswith("jax=="))
    return [*pins, jax.replace("jax==", "jaxlib==")]


@nox.session
def lowest(session: nox.Session) -> None:
    """A slice of the tests on the lowest versions pyproject.toml allows. torch stays at
    constraints.txt's CPU pin unless CROSSCHECK_LOWEST_TORCH=1: every other torch wheel on the
    package index is a CUDA build, about 3 GB with its libraries."""
    torch = os.environ.get("CROSSCHECK_LOWEST_TORCH") == "1"
    session.install(*([] if torch else ["-c", "constraints.txt"]), *lowest_pins(torch), "-e", ".[test]")
    session.run("python", "-c", "import jax, flax, numpy, ml_dtypes, torch; print('jax', jax.__version__, "
                "'flax', flax.__version__, 'numpy', numpy.__version__, 'ml_dtypes', ml_dtypes.__version__, 'torch', torch.__version__)")
    default = ["-q", "tests/test_cli.py", "tests/test_layers_linear.py", "tests/test_library.py"]
    session.run("python", "-m", "pytest", *(session.posargs or default))


@nox.session
def example(session: nox.Session) -> None:
    """examples/own_layer installed beside crosscheck in one fresh environment: its tests and the CLI."""
    # Not an editable install: the example must work from what a user installs.
    session.install("-c", "constraints.txt", ".", "./examples/own_layer[test]")
    session.chdir("examples/own_layer")
    session.run("python", "-m", "pytest", "-q", "--crosscheck-trials", "2", *session.posargs)
    # The installed package's entry point registers its cases; --cases does without one.
    session.run("python", "-m", "crosscheck", "--layer", "softsign", "--trials", "2")
    session.run("python", "-m", "crosscheck", "--cases", "softsign_layers.crosscheck_cases", "--layer", "softsign",
                "--dtype", "float64", "--trials", "2", "--jobs", "2")
