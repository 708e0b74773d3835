"""`python -m crosscheck`: run the checks, print failures and a summary, exit 0/1/2."""

from __future__ import annotations

import argparse
import shlex
import sys

from . import registry
from ._version import __version__
from .options import UsageError, parse_seeds, parse_shard

# The declared shapes plus one drawn bucket: every run sees two shapes of each case that
# declares ranges, at about twice the compile time; soaks and CI may ask for more.
DEFAULT_SHAPES = 2

# Dispatched on the first word in `main`, before this parser runs; each has its own --help.
SUBCOMMANDS = """subcommands:
  mutants     run the planted backward bugs through the harness (python -m crosscheck mutants --help)
  new NAME    scaffold a layer family that passes every check (python -m crosscheck new --help)
  port A B    check a port of a torch model to Flax NNX (python -m crosscheck port --help)"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m crosscheck",
        description="Check hand-written backward passes: torch vs JAX, vs autodiff, vs finite differences.",
        epilog=SUBCOMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"crosscheck {__version__}")
    p.add_argument("--layer", action="append", metavar="NAME", help="case or family name (repeatable; default: all)")
    p.add_argument("--cases", action="append", metavar="MODULE",
                   help="import this module first, which registers its own cases, e.g. mypkg.crosscheck_cases "
                        "(repeatable; installed packages' entry points in the group crosscheck.cases load anyway)")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help=f"one of {', '.join(registry.DTYPES)} (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (auto: cuda when torch and JAX both see a GPU)")
    p.add_argument("--trials", type=int, default=8, help="fresh random draws per case (default 8)")
    p.add_argument(
        "--shapes", type=int, default=DEFAULT_SHAPES, metavar="N",
        help=f"shape buckets per case: the declared shapes, then N-1 drawn from the ranges the case "
             f"declares, each with its own trials (default {DEFAULT_SHAPES})",
    )
    p.add_argument("--seed", type=int, default=0, help="fixes every random draw (default 0)")
    p.add_argument(
        "--seeds", metavar="A:B",
        help="soak: run seeds A..B-1 batched together and report the worst error/tolerance per case",
    )
    p.add_argument("--json", metavar="PATH", help="write every check to this JSON file")
    p.add_argument("--junit", metavar="PATH", help="write JUnit XML (one test per check)")
    p.add_argument("--markdown", metavar="PATH", help="write the summary table as Markdown")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the worst error/tolerance per case and dtype")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (0-based) of the cases, e.g. 0/4")
    p.add_argument(
        "--jobs", default="1", metavar="N",
        help="split the cases over N processes (one --shard each) and merge their reports; auto: one "
             "per core, at most 8, and as many as the memory (and a GPU's) holds (default 1)",
    )
    # A shard started by `--jobs` writes its progress here, for the parent's bar.
    p.add_argument("--progress-file", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument(
        "--no-program-cache",
        action="store_true",
        help="trace every JAX program anew instead of loading those kept from earlier runs",
    )
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p


class _Progress:
    """A progress bar on stderr (rich) while cases run; a plain line now and then when stderr
    is not a terminal (`progress.PlainProgress`)."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), transient=True)
        self.task = None

    @classmethod
    def maybe(cls):
        if not sys.stderr.isatty():  # CI: a plain line now and then instead
            from .progress import PlainProgress

            return PlainProgress()
        try:
            return cls()
        except ImportError:
            return None

    def start(self, total):
        self.bar.start()
        self.task = self.bar.add_task("starting", total=total)

    def step(self, label):
        if self.bar.tasks[0].description != "starting":
            self.bar.advance(self.task)
        self.bar.update(self.task, description=label)

    def stop(self):
        self.bar.advance(self.task)
        self.finish()

    def show(self, done: int, total: int, label: str):
        """Set the bar outright (`--jobs`: the shards' progress, summed)."""
        if self.task is None:
            self.start(total)
        self.bar.update(self.task, completed=done, total=total, description=label)

    def finish(self):
        self.bar.stop()


def _list() -> str:
    cases = registry.all_cases()
    width = max(len(c.name) for c in cases)
    return "\n".join(f"{c.name.ljust(width)}  {c.family:<10}  {c.description}".rstrip() for c in cases)


def _mutants_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m crosscheck mutants",
        description="Run planted backward bugs through the harness; exit 1 if one survives every dtype, "
                    "or a check that should not fails it.",
    )
    p.add_argument("--only", action="append", metavar="NAME", help="mutant, case or family name (repeatable)")
    p.add_argument("--dtype", action="append", metavar="DTYPE",
                   help="dtype to run the mutants in, each judged on its own (repeatable; default float64)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    p.add_argument("--trials", type=int, default=2, help="trials per mutant (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="print each mutant's failure messages")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from .mutants._run import format_table, passed, run_mutants, select

    try:
        mutants = select(args.only)
        verdicts = run_mutants(mutants, args.dtype or ["float64"], args.device, args.trials, args.seed)
    except ValueError as e:  # UsageError included
        print(f"crosscheck: error: {e}", file=sys.stderr)
        return 2
    if args.verbose:
        for v in verdicts:
            print("\n\n".join(v.messages) + "\n")
    print(format_table(verdicts))
    return 0 if passed(verdicts) else 1


def _new_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m crosscheck new",
        description="Scaffold a layer family: torch and JAX layer files, a registered case and a test.",
    )
    p.add_argument("name", help="the family's file stem, e.g. swiglu")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--root", default=".", help="this repository's root (default: the current directory)")
    where.add_argument("--into", metavar="DIR",
                       help="a folder of your own package instead: writes DIR/torch_NAME.py, jax_NAME.py, "
                            "NAME_cases.py and test_NAME.py, importing the package absolutely by DIR's name "
                            "(after those of the folders above it that hold an __init__.py)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from .scaffold import next_step, scaffold

    try:
        written = scaffold(args.name, args.root, args.into)
    except UsageError as e:
        print(f"crosscheck: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(f"wrote {p}" for p in written))
    print(next_step(args.name, args.into))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mutants"]:
        return _mutants_main(argv[1:])
    if argv[:1] == ["new"]:
        return _new_main(argv[1:])
    if argv[:1] == ["port"]:
        from .port._cli import main as port_main

        return port_main(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    from .plugins import load

    try:
        load(args.cases)
    except ValueError as e:
        print(f"crosscheck: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        print(_list())
        return 0
    from .report import format_failures, format_summary
    from .session import run

    command = "python -m crosscheck " + shlex.join(argv)
    try:
        seed = parse_seeds(args.seeds) if args.seeds else args.seed
        shard = parse_shard(args.shard) if args.shard else None
        from .jobs import count

        args.jobs = count(args.jobs, args.device)
        if args.jobs > 1:
            report = _jobs(args, command.strip())
        else:
            from .jobs import ProgressFile

            progress = ProgressFile(args.progress_file) if args.progress_file else _Progress.maybe()
            report = run(args.layer, args.dtype, args.device, args.trials, seed, command=command.strip(),
                         shard=shard, progress=progress, shapes=args.shapes,
                         program_cache=not args.no_program_cache)
    except UsageError as e:
        print(f"crosscheck: error: {e}", file=sys.stderr)
        return 2
    failures = format_failures(report)
    if failures:
        print(failures + "\n")
    print(format_summary(report))
    written = _write_reports(report, args)
    for label, path in written:
        print(f"{label}: {path}")
    requested = sum(bool(p) for p in (args.json, args.junit, args.markdown, args.plot))
    return 0 if report.passed and len(written) == requested else 1


def _jobs(args, command: str):
    if args.shard:
        raise UsageError(f"`--jobs` (={args.jobs}) makes its own shards: leave out `--shard` (={args.shard})")
    from . import jobs, options

    # What each shard would refuse, refused once here, before any process starts.
    options.check_options(args.trials, args.shapes, args.device)
    options.select_cases(args.layer)
    options.check_dtypes(args.dtype)
    return jobs.run(args, command, _Progress.maybe())


def _write_reports(report, args) -> list[tuple[str, str]]:
    """Every requested report file; one writer failing does not stop the others."""
    from .report import format_markdown, write_junit

    def markdown(path):
        with open(path, "w") as f:
            f.write(format_markdown(report))

    def plot(path):
        from .plot import write_plot

        write_plot(report, path)

    written = []
    for label, path, write in (("report", args.json, report.write_json), ("junit", args.junit, lambda p: write_junit(report, p)),
                               ("markdown", args.markdown, markdown), ("plot", args.plot, plot)):
        if not path:
            continue
        try:
            write(path)
            written.append((label, path))
        except Exception as e:  # report the failure, keep writing the rest
            print(f"crosscheck: could not write {label} {path}: {type(e).__name__}: {e}", file=sys.stderr)
    return written
