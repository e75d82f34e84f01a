"""End-to-end tests of `batchrun results`: real launches, real jobs reporting metrics every supported way."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from pathlib import Path

import pytest
from conftest import run_batchrun, start_batchrun, wait_for

import batchrun.results
from batchrun.runfile.file import job_id_of

TRAIN = """\
import sys
import batchrun
args = dict(arg[2:].split("=") for arg in sys.argv[1:])
lr, seed = float(args["lr"]), int(args["seed"])
for step in range(4):
    batchrun.log({"loss": round(1.0 / (1 + step * lr) + seed / 100, 6), "step_x": step}, step=step * 10)
batchrun.summary({"acc": lr * 10 + seed})
"""

GRID = f"""\
program: {sys.executable} train.py
metric:
  name: loss
  goal: minimize
parameters:
  lr:
    values: [0.1, 0.5]
  seed:
    values: [1, 2, 3]
"""


def _loss(lr: float, seed: int, step: int = 3) -> float:
    return round(1.0 / (1 + step * lr) + seed / 100, 6)


@pytest.fixture()
def sweep(workdir: Path) -> Path:
    (workdir / "train.py").write_text(TRAIN)
    (workdir / "grid.yml").write_text(GRID)
    proc = run_batchrun("launch", "grid.yml", "-j", "2", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return workdir


def _json(*args: str, cwd: Path) -> list[dict[str, object]]:
    proc = run_batchrun("results", *args, "--json", cwd=cwd)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc, list)
    return doc


def test_sweep_table_has_every_run_with_typed_parameters_and_last_values(sweep: Path) -> None:
    rows = _json("grid.yml", cwd=sweep)
    assert [(row["line"], row["lr"], row["seed"], row["state"]) for row in rows] == [
        (1, 0.1, 1, "succeeded"), (2, 0.1, 2, "succeeded"), (3, 0.1, 3, "succeeded"),
        (4, 0.5, 1, "succeeded"), (5, 0.5, 2, "succeeded"), (6, 0.5, 3, "succeeded"),
    ]
    for row in rows:
        assert row["loss"] == _loss(row["lr"], row["seed"])  # type: ignore[arg-type]
        assert row["acc"] == row["lr"] * 10 + row["seed"]  # type: ignore[operator]
        assert row["step_x"] == 3
        assert isinstance(row["runtime"], float)
        assert row["log_dir"] == str(sweep / "runs" / "grid" / "logs" / str(row["job_id"]))
        assert row["job_id"] == job_id_of(str(row["command"]))
    assert list(rows[0]) == ["line", "job_id", "state", "lr", "seed", "loss", "step_x", "acc", "runtime", "max_rss_kb", "user_cpu_s", "sys_cpu_s", "max_gpu_mem_mb", "code", "command", "log_dir"]
    proc = run_batchrun("results", "grid.yml", cwd=sweep)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["line", "id", "state", "lr", "seed", "loss", "step_x", "acc", "runtime"]
    assert lines[4].split()[:6] == ["4", job_id_of(f"{sys.executable} train.py --lr=0.5 --seed=1")[:8], "succeeded", "0.5", "1", f"{_loss(0.5, 1):.6g}"]
    assert len(lines) == 7


def test_load_gives_plain_rows(sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows `--json` prints, from Python, for a dodo.py or a notebook."""
    monkeypatch.chdir(sweep)
    assert batchrun.results.load("grid.yml") == _json("grid.yml", cwd=sweep)
    rows = batchrun.results.load("grid.yml", agg="min")
    assert len(rows) == 6 and all(type(row) is dict for row in rows)
    assert rows[0]["loss"] == _loss(0.1, 1) and rows[0]["acc"] == 2.0  # min of a falling loss is its last


def test_agg_sort_top_state(sweep: Path) -> None:
    first = _json("grid.yml", "--agg", "max", cwd=sweep)
    assert [row["loss"] for row in first] == [_loss(lr, seed, 0) for lr in (0.1, 0.5) for seed in (1, 2, 3)]
    mean = _json("grid.yml", "--agg", "mean", "--sort", "-loss", "--top", "2", cwd=sweep)
    assert [row["line"] for row in mean] == [3, 2]
    assert mean[0]["loss"] == pytest.approx(statistics.mean(_loss(0.1, 3, s) for s in range(4)))
    assert _json("grid.yml", "--state", "failed", cwd=sweep) == []


def test_best(sweep: Path) -> None:
    proc = run_batchrun("results", "grid.yml", "--best", "loss", cwd=sweep)
    command = f"{sys.executable} train.py --lr=0.5 --seed=1"
    job_id = job_id_of(command)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        f"best loss {_loss(0.5, 1):.6g} (min): line 4, job {job_id}, succeeded",
        f"  command: {command}",
        f"  log dir: {sweep / 'runs' / 'grid' / 'logs' / job_id}",
    ]
    proc = run_batchrun("results", "grid.yml", "--best", "acc:max", "--json", cwd=sweep)
    assert json.loads(proc.stdout)["line"] == 6


def test_over_seed_gives_mean_std_and_count(sweep: Path) -> None:
    rows = _json("grid.yml", "--over", "seed", cwd=sweep)
    assert [(row["lr"], row["runs"], row["loss_n"]) for row in rows] == [(0.1, 3, 3), (0.5, 3, 3)]
    for row in rows:
        values = [_loss(row["lr"], seed) for seed in (1, 2, 3)]  # type: ignore[arg-type]
        assert row["loss"] == pytest.approx(statistics.mean(values))
        assert row["loss_std"] == pytest.approx(statistics.stdev(values))
        assert "seed" not in row
    table = run_batchrun("results", "grid.yml", "--over", "seed", "--sort", "loss", cwd=sweep).stdout.splitlines()
    assert table[0].split() == ["lr", "runs", "loss", "step_x", "acc"]
    # The runs column counts the runs: no "(3)" beside each mean.
    assert table[1].split()[:5] == ["0.5", "3", f"{statistics.mean(_loss(0.5, s) for s in (1, 2, 3)):.6g}", "±", "0.01"]
    assert "(3)" not in table[1]
    best = run_batchrun("results", "grid.yml", "--over", "seed", "--best", "loss", cwd=sweep).stdout
    assert best.startswith(f"best loss {statistics.mean(_loss(0.5, s) for s in (1, 2, 3)):.6g} ± 0.01 (min, mean of 3 runs): lr=0.5")


def test_csv_has_every_value_exactly(sweep: Path) -> None:
    proc = run_batchrun("results", "grid.yml", "--csv", cwd=sweep)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0]) == ["line", "job_id", "state", "lr", "seed", "loss", "step_x", "acc", "runtime", "max_rss_kb", "user_cpu_s", "sys_cpu_s", "max_gpu_mem_mb", "code", "command", "log_dir"]
    assert [float(row["loss"]) for row in rows] == [_loss(lr, seed) for lr in (0.1, 0.5) for seed in (1, 2, 3)]
    over = list(csv.DictReader(io.StringIO(run_batchrun("results", "grid.yml", "--over", "seed", "--csv", cwd=sweep).stdout)))
    assert list(over[0])[:5] == ["lr", "runs", "loss", "loss_std", "loss_n"]


SHELL_LINES = [
    # Any language: append JSON lines to $BATCHRUN_METRICS.
    ': --kind=shell ; for i in 1 2 3; do echo "{\\"loss\\": 0.$i, \\"_step\\": $i}" >> "$BATCHRUN_METRICS"; done',
    # A script that cannot be changed: metrics scraped from its output.
    ": --kind=scraped ; echo 'epoch 1 loss: 0.9'; echo 'epoch 2 loss: 0.4'",
    # A failed job keeps what it logged.
    ': --kind=failed ; echo "{\\"loss\\": 0.8}" >> "$BATCHRUN_METRICS"; echo boom >&2; exit 3',
    # Killed mid-history: every line logged before the SIGKILL is there.
    ': --kind=killed ; for i in 1 2 3; do echo "{\\"loss\\": 0.$((7 - i))}" >> "$BATCHRUN_METRICS"; done; kill -9 $$; echo "{\\"loss\\": 0}" >> "$BATCHRUN_METRICS"',
]


def test_shell_scraped_failed_and_killed_jobs(make_runfile, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_runfile(SHELL_LINES)
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert proc.returncode == 1, proc.stderr
    rows = _json("exp.runfile", "--scrape", "loss=loss: ([0-9.]+)", cwd=workdir)
    got = {row["kind"]: (row["state"], row["loss"]) for row in rows}
    assert got == {"shell": ("succeeded", 0.3), "scraped": ("succeeded", 0.4), "failed": ("failed", 0.8), "killed": ("failed", 0.4)}
    minimum = _json("exp.runfile", "--scrape", "loss=loss: ([0-9.]+)", "--agg", "min", cwd=workdir)
    assert [row["loss"] for row in minimum] == [0.1, 0.4, 0.8, 0.4]
    # Without --scrape, the scraped job has no loss: scraping happens at read time only.
    assert [row["loss"] for row in _json("exp.runfile", cwd=workdir)] == [0.3, None, 0.8, 0.4]


def test_results_while_a_launch_runs(make_runfile, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    go = workdir / "go"
    make_runfile([f'echo "{{\\"loss\\": 0.5}}" >> "$BATCHRUN_METRICS"; while [ ! -e {go} ]; do sleep 0.05; done; echo "{{\\"loss\\": 0.25}}" >> "$BATCHRUN_METRICS"'])
    proc = start_batchrun("launch", "exp.runfile", cwd=workdir)
    logs = workdir / "runs" / "exp" / "logs"
    try:
        wait_for(lambda: logs.exists() and any(path.stat().st_size for path in logs.glob("*/metrics.jsonl")), what="the first metric")
        [row] = _json("exp.runfile", cwd=workdir)
        assert (row["state"], row["loss"]) == ("running", 0.5)
    finally:
        go.touch()
        proc.communicate(timeout=60)
    [row] = _json("exp.runfile", cwd=workdir)
    assert (row["state"], row["loss"]) == ("succeeded", 0.25)


# -- bad input -------------------------------------------------------------------


def _one_error(proc: object, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr  # type: ignore[attr-defined]
    err: str = proc.stderr  # type: ignore[attr-defined]
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err


def test_bad_metrics_are_skipped_with_counts(make_runfile, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_runfile([
        "printf 'not json\\n{\"loss\": \"high\"}\\n{\"loss\": NaN}\\n{\"loss\": -Infinity}\\n{\"loss\": 2, \"seed\": 9}\\n' >> \"$BATCHRUN_METRICS\" --seed=1",
    ])
    assert run_batchrun("launch", "exp.runfile", "-q", cwd=workdir).returncode == 0
    proc = run_batchrun("results", "exp.runfile", "--json", cwd=workdir)
    assert proc.returncode == 0
    [row] = json.loads(proc.stdout)
    assert (row["seed"], row["loss"]) == (1, 2)  # the parameter keeps its name; the metric "seed" is left out
    log = workdir / "runs" / "exp" / "logs" / str(row["job_id"]) / "metrics.jsonl"
    assert proc.stderr.splitlines() == [
        f"batchrun: warning: skipped 1 metrics lines that are not JSON objects (first: {log}:1)",
        f'batchrun: warning: skipped 1 metric values that are not numbers (first: {log}: loss="high")',
        f"batchrun: warning: skipped 2 NaN or infinite metric values (first: {log}: loss)",
        "batchrun: warning: skipped 1 values of metrics named like a parameter or a column (rename them) (first: seed)",
    ]


def test_a_huge_metrics_file_is_read_from_its_end(make_runfile, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    make_runfile(['echo "{\\"loss\\": 1}" >> "$BATCHRUN_METRICS"'])
    assert run_batchrun("launch", "exp.runfile", "-q", cwd=workdir).returncode == 0
    [log] = (workdir / "runs" / "exp" / "logs").glob("*/metrics.jsonl")
    block = b'{"loss": 0.5, "other": 1}\n' * 100_000
    with open(log, "ab") as f:
        for _ in range(200 * 2**20 // len(block)):
            f.write(block)
        f.write(b'{"loss": 0.125}\n')
    proc = run_batchrun("results", "exp.runfile", "--json", cwd=workdir)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)[0]["loss"] == 0.125
    assert proc.stderr == f"batchrun: warning: read only the last 16 MiB of 1 metrics files over 16 MiB (first: {log} ({log.stat().st_size >> 20} MiB))\n"


def test_bad_usage_is_one_line(sweep: Path) -> None:
    _one_error(run_batchrun("results", "grid.yml", "--best", "nope", cwd=sweep), "batchrun: error: --best nope: no such metric in grid.yml (metrics: loss, step_x, acc)")
    _one_error(run_batchrun("results", "grid.yml", "--over", "batch", cwd=sweep), "--over batch: not a parameter of grid.yml (parameters: lr, seed)")
    _one_error(run_batchrun("results", "grid.yml", "--sort", "-nope", cwd=sweep), "--sort -nope: no column 'nope'")
    _one_error(run_batchrun("results", "grid.yml", "--scrape", "loss=(", cwd=sweep), "bad regular expression")
    _one_error(run_batchrun("results", "grid.yml", "--scrape", "loss", cwd=sweep), "expected NAME=REGEX")
    _one_error(run_batchrun("results", "grid.yml", "--top", "0", cwd=sweep), "--top")
    _one_error(run_batchrun("results", "nothing.runfile", cwd=sweep), "nothing.runfile")
    (sweep / "new.runfile").write_text("echo hi\n")
    _one_error(run_batchrun("results", "new.runfile", cwd=sweep), "nothing launched yet for new.runfile")


def test_a_runs_directory_gives_the_same_rows(sweep: Path) -> None:
    by_gridspec = _json("grid.yml", cwd=sweep)
    by_dir = _json("runs/grid", cwd=sweep)
    assert [{k: v for k, v in row.items() if k != "runtime"} for row in by_dir] == [{k: v for k, v in row.items() if k != "runtime"} for row in by_gridspec]


def test_subcommands_have_help_and_an_example() -> None:
    import argparse

    from batchrun.cli import app as cli

    parser = cli._build_parser()
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    for name in ("results", "report"):
        assert helps[name]
        assert "Example: batchrun " in (sub.choices[name].description or "")


def test_a_retried_job_reports_its_last_attempt_only(make_runfile, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    flag = workdir / "second"
    make_runfile([f'if [ -e {flag} ]; then echo "{{\\"loss\\": 2}}" >> "$BATCHRUN_METRICS"; else touch {flag}; echo "{{\\"loss\\": 1}}" >> "$BATCHRUN_METRICS"; exit 1; fi'])
    proc = run_batchrun("launch", "exp.runfile", "--retries", "1", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    [row] = _json("exp.runfile", "--agg", "min", cwd=workdir)
    assert (row["state"], row["loss"]) == ("succeeded", 2)
    assert (Path(str(row["log_dir"])) / "metrics.1.jsonl").read_text() == '{"loss": 1}\n'


PLACED = f"""\
program: {sys.executable} t.py --out=out_${{tag}}
parameters:
  lr:
    values: [1e-3, 0.1]
  tag:
    values: ["007", "8"]
  flag:
    values: [true, false]
"""


def test_a_sweeps_parameters_are_the_gridspecs_exact_values(workdir: Path) -> None:
    (workdir / "t.py").write_text("import batchrun\nbatchrun.log({'loss': 1.5})\n")
    (workdir / "grid.yml").write_text(PLACED)
    proc = run_batchrun("sweep", "grid.yml", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    runfile = workdir / "grid.runfile"
    lines = runfile.read_text().splitlines()
    assert lines[0] == f"{sys.executable} t.py --out=out_007 --lr=1e-3 --flag=True"
    # A line edited by hand is no point of the gridspec: its parameters come from its flags.
    lines[1] = f"{sys.executable} t.py --out=out_9 --lr=0.5 --flag=no --other=1"
    runfile.write_text("\n".join(lines) + "\n")
    proc = run_batchrun("launch", "grid.runfile", "-q", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    rows = _json("grid.yml", cwd=workdir)
    got = [(row["lr"], row["tag"], row["flag"]) for row in rows]
    assert got == [(0.001, "007", True), (0.5, None, "no"), (0.001, "8", True), (0.001, "8", False),
                   (0.1, "007", True), (0.1, "007", False), (0.1, "8", True), (0.1, "8", False)]
    assert [type(value).__name__ for value in rows[0].values()][3:7] == ["float", "str", "bool", "float"]
    assert list(rows[0])[:7] == ["line", "job_id", "state", "lr", "tag", "flag", "loss"]
    # A runfile alone has only its flags: the placed value is not a parameter, `--lr=1e-3` reads as a number.
    plain = _json("grid.runfile", cwd=workdir)
    assert (plain[0]["lr"], plain[0]["flag"], "tag" in plain[0]) == (0.001, True, False)
    # --over and --best see the same exact values.
    over = _json("grid.yml", "--over", "flag", cwd=workdir)
    assert [(row["lr"], row["tag"], row["runs"]) for row in over] == [
        (0.001, "007", 1), (0.5, None, 1), (0.001, "8", 2), (0.1, "007", 2), (0.1, "8", 2)]
    table = run_batchrun("results", "grid.yml", cwd=workdir).stdout.splitlines()
    assert table[1].split()[3:6] == ["0.001", "007", "true"]
    # metadata.json keeps the original tool's parameters: the command's flags, as text.
    meta = json.loads((workdir / "runs" / "grid" / "metadata.json").read_text())
    assert meta[rows[0]["job_id"]]["parameters"] == {"out": "out_007", "lr": "1e-3", "flag": "True"}


def test_the_launch_caches_each_jobs_metrics_and_results_never_take_a_stale_entry(sweep: Path) -> None:
    runs = sweep / "runs" / "grid"
    cache = runs / ".metrics-cache.v1.jsonl"
    entries = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sorted(entry[0] for entry in entries) == sorted(row["job_id"] for row in _json("grid.yml", cwd=sweep))  # type: ignore[type-var]
    with_cache = run_batchrun("results", "grid.yml", "--json", cwd=sweep).stdout
    assert cache.read_text().count("\n") == 6  # every job a hit: nothing appended
    # A job's file changed after the launch: its new last value, whatever the cache says.
    job_id = json.loads(with_cache)[0]["job_id"]
    with open(runs / "logs" / job_id / "metrics.jsonl", "a") as handle:
        handle.write('{"loss": 0.001}\n')
    changed = _json("grid.yml", cwd=sweep)
    assert changed[0]["loss"] == 0.001 and changed[1:] == json.loads(with_cache)[1:]
    # No cache, or a damaged one: the same rows, read from the files.
    cache.write_text('{"torn": \n["' + job_id + '", 1, 2, 3, [], [], {}]\n')
    assert _json("grid.yml", cwd=sweep) == changed
    cache.unlink()
    assert _json("grid.yml", cwd=sweep) == changed
    assert cache.read_text().count("\n") == 6  # jobs that ran before the cache existed: cached by the first reading
    for agg in ("mean", "min", "max"):
        from_cache = _json("grid.yml", "--agg", agg, cwd=sweep)
        cache.unlink()
        assert _json("grid.yml", "--agg", agg, cwd=sweep) == from_cache
