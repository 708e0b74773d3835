"""The bench's table: ratios per case, the crosscheck per dtype, and each target's verdict."""

from __future__ import annotations

from crosscheck.bench import format_table, main


def _result(cold, warm):
    row = {
        "run": 0.5, "compile_and_run": 2.0, "frameworks": 0.4, "harness": 0.1,
        "gradcheck": 1.0, "gradcheck_fast": 0.1, "gradgradcheck": 3.0, "check_grads_1": 2.0, "check_grads_2": 5.0,
        "by_dtype": {"float64": {"run": 0.5, "compile_and_run": 2.0}, "bfloat16": {"run": 0.25, "compile_and_run": 1.5}},
    }
    return {
        "trials": 8, "dtypes": ["float64", "bfloat16"], "cases": {"relu": row, "tanh": dict(row, by_dtype={})},
        "trials_curve": {"relu": {1: 0.1, 1024: 0.3}}, "size_curve": {},
        "cli": {"cold": cold, "cold_exit": 0, "warm": warm, "warm_exit": 0, "warm_jobs2": warm / 2, "warm_jobs2_exit": 0},
    }


def test_table_gives_ratios_dtypes_and_verdicts():
    table = format_table(_result(cold=45.0, warm=30.0))
    relu = next(line for line in table.splitlines() if line.startswith("relu"))
    # gradcheck 1.0 s / crosscheck 0.5 s, gradgradcheck 3.0 / 0.5, then the bfloat16 run
    assert relu.split()[4:7] == ["2", "0.2", "6"] and relu.split()[-1] == "0.25"
    assert next(line for line in table.splitlines() if line.startswith("tanh")).split()[-1] == "-"
    assert "  bfloat16: 0.2 s / 1.5 s over 1 cases" in table
    assert "holds: whole CLI cold (empty compilation cache): 45 s (target < 60 s)" in table
    assert "MISSED: whole CLI warm (compilation cache filled): 30 s (target < 20 s)" in table
    assert "holds: whole CLI warm, --jobs 2: 15 s (target < 20 s)" in table
    assert "warm with --jobs 2 15.0 s (exit 0)" in table
    assert "holds: harness share of the frameworks' time: 25 % (target < 30 %)" in table
    assert "holds: 1024 trials / 1 trial (relu): 3 x" in table


def test_unknown_dtype_is_a_usage_error(capsys):
    assert main(["--dtype", "float8", "--layer", "relu", "--skip-cli"]) == 2
    assert "Unknown dtype: 'float8'" in capsys.readouterr().err
