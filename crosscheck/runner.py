"""Runs every check of one case in one dtype on one device, and collects the results.

A case run draws its inputs (`inputs`), plans its stages (`plan`), has each framework compute
its share (`frameworks`), judges them (`checks`) and records the findings (`results`). A stage
that raises turns the checks that need it into failed checks carrying its error, and every
other check still runs.
"""

from __future__ import annotations

from . import checks
from .checks import Finding
from .frameworks import both, compute
from .inputs import Inputs
from .plan import Outcome, Plan, attempt
from .registry import LOW_PRECISION, Case
from .results import CheckId, CheckResult

# A soak's failure lists at most this many of its failing seeds.
SEEDS_SHOWN = 20


def repro_command(case: Case, dtype: str, device: str, seed: int, trials: int, shapes: int = 1) -> str:
    select = case.selector or f"--layer {case.name}"
    if case.origin and not case.selector:  # a case from outside: its module registers it
        select = f"--cases {case.origin} {select}"
    more = f" --shapes {shapes}" if shapes > 1 else ""
    return f"python -m crosscheck {select} --dtype {dtype} --device {device} --seed {seed} --trials {trials}{more}"


class CaseRun:
    """All checks of `case` in `dtype` on `device`, with `trials` fresh draws batched together.

    `torch` and `jax` are the adapters (`crosscheck.adapters`); `sides` the frameworks over them
    where the caller keeps them between runs. `bucket` is `(k, label)` of the shape bucket."""

    # The case's functions that exist (`Plan.given`); None: all of them.
    given: frozenset | None = None

    def __init__(self, case: Case, dtype: str, device: str, trials: int, seed, torch, jax,
                 bucket: tuple[int, str] = (0, ""), sides=None):
        # Several seeds (a soak) run as one batch: seed s contributes the same `trials` draws
        # as a run with `--seed s`, so any failing seed reproduces on its own.
        self.seeds = list(seed) if isinstance(seed, (list, tuple, range)) else [seed]
        self.seed, self.per_seed = self.seeds[0], trials
        self.case, self.dtype, self.device, self.trials = case, dtype, device, trials * len(self.seeds)
        self.torch, self.jax = torch, jax
        self.sides = sides or both(torch, jax)
        self.low = dtype in LOW_PRECISION
        self.results: list[CheckResult] = []
        self.not_run: list[str] = []  # "check (compared): why", for each check a missing function stopped
        # Shape bucket k (0: the declared shapes) is reproduced by running buckets 0..k.
        self.bucket, self.shape = bucket
        self.repro = repro_command(case, dtype, device, self.seed, trials, self.bucket + 1)
        self.clock: dict[str, float] = {}  # seconds per stage: the frameworks' share of the run

    def _stage(self, label, thunk) -> Outcome:
        return attempt(label, thunk, self.clock)

    def draw(self):
        self.inputs = Inputs.draw(self.case, self.dtype, self.seeds, self.per_seed, self.torch)

    def record(self, *findings: Finding):
        """Each finding as a `CheckResult`, with the run's identity, the failing seeds of a
        soak and the command that reproduces it; one that could not run, in `not_run`."""
        for f in findings:
            if f.absent is None:
                self.results.append(self._result(f))
            elif f"{f.check} ({f.compared}): {f.absent}" not in self.not_run:
                self.not_run.append(f"{f.check} ({f.compared}): {f.absent}")

    def _result(self, f: Finding) -> CheckResult:
        ident = CheckId(self.case.name, self.dtype, self.device, f.check, f.tensor, f.compared, self.shape)
        cmp, lines, repro = f.comparison, f.lines, self.repro
        if cmp is not None and cmp.bad_trials and len(self.seeds) > 1:
            failing = sorted({self.seeds[t // self.per_seed] for t in cmp.bad_trials})
            more = " ..." if len(failing) > SEEDS_SHOWN else ""
            lines = [*lines, f"Failing seeds: {', '.join(map(str, failing[:SEEDS_SHOWN]))}{more}"]
            repro = repro_command(self.case, self.dtype, self.device, failing[0], self.per_seed, self.bucket + 1)
        if self.shape:
            lines = [f"Shapes: {self.shape}", *lines]
        message = "" if f.passed else "\n".join([ident.head(f.passed), *("  " + ln for ln in lines), f"  Reproduce: {repro}"])
        numbers = {} if cmp is None else dict(
            max_abs_err=cmp.max_abs, max_rel_err=cmp.max_rel, atol=cmp.atol, rtol=cmp.rtol, ratio=cmp.ratio
        )
        return CheckResult(id=ident, passed=f.passed, message=message, **numbers)

    def run(self) -> list[CheckResult]:
        drawn = self._stage("drawing inputs", self.draw)
        if drawn.error:
            self.record(checks.error("setup", "-", "inputs", drawn.error))
            return self.results
        plan = Plan(self.case, self.dtype, self.shape, self.given)
        stages = compute(self.sides, plan, self.inputs, self.clock)
        self.record(*checks.every(plan, stages, self.inputs))
        return self.results


def run_case(case: Case, dtype: str, device: str, trials: int, seed: int, torch, jax, shapes: int = 1) -> list[CheckResult]:
    """Every check of `case` on each of its first `shapes` shape buckets (`registry.buckets`)."""
    from .registry import buckets

    sides = both(torch, jax)
    results = []
    try:
        runs = buckets(case, shapes)
    except Exception as exc:  # a shape space that builds a broken case is a failed check
        setup = CaseRun(case, dtype, device, trials, seed, torch, jax, sides=sides)
        setup.record(checks.error("setup", "-", "shape buckets", f"case.shapes.build raised {type(exc).__name__}: {exc}"))
        results, runs = setup.results, [("", case)]
    for k, (label, bucket_case) in enumerate(runs):
        results += CaseRun(bucket_case, dtype, device, trials, seed, torch, jax, (k, label), sides).run()
    for side in sides:
        side.case_done()
    return results
