"""`status`, `failed` and `results` streamed over the compact job table give exactly what the held path gives.

A runs directory of thousands of jobs in every state (succeeded, failed,
timeout, interrupted, requeued, killed, stopped, running with no launch,
pending, ignored, removed from the runfile) is written with the journal's
own writers, as a launch writes it; the streamed commands run through the
real CLI (several windows of `status.compact.WINDOW` jobs), and the golden
is the same output made in another process by the path that holds every job
(`view.load_status`, one window).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_batchrun

from batchrun.runfile.file import job_id_of, load_runfile
from batchrun.status.compact import WINDOW
from batchrun.store.journal import Journal
from batchrun.store.metadata import MetadataView, build_entry, render_entry
from batchrun.store.records import State
from batchrun.store.rundir import RunsDir

pytestmark = pytest.mark.timeout(600)

# The held path's output, made in a process of its own: the golden.
_HELD = """
import sys
from pathlib import Path
from batchrun.cli import status as cli
from batchrun.cli.statustable import write_csv, write_table
from batchrun.cli.words import count, counts_text
from batchrun.status.view import load_status
from batchrun.store.target import resolve_target

command, given, *states = sys.argv[1:]
if command in ("results-held", "cli-held"):  # the CLI itself, every job held
    from batchrun.cli import plan
    from batchrun.cli.app import main
    from batchrun.status import beside, compact
    compact.usable_for = beside.usable_for = plan.usable_for = lambda target: False
    beside.runfile_beside = lambda target: None
    sys.exit(main(["results", given, *states] if command == "results-held" else states))
target = resolve_target(Path(given), None, "metadata.json")
status = load_status(target, need_entries=command == "json")
if command == "json":
    import json
    from batchrun.status.lookup import job_entry
    jobs = status.select(states)
    doc = {
        "runs_dir": str(status.runs_dir.path), "runfile": str(target.runfile), "launch": {"running": status.launch_running, "pid": status.launch_pid},
        "counts": status.counts(), "jobs": {job.job_id: {**job_entry(status, job), "removed": job.removed, "category": job.category} for job in jobs},
    }
    print(json.dumps(doc, ensure_ascii=False))
    sys.exit(0)
if command.startswith("resources"):
    from batchrun.cli.resources import write_resources
    from batchrun.status.resources import COUNTED, percentile
    from batchrun.status import resources
    def three(values):  # the summary as a whole sort makes it
        values = sorted([*(value for chunk in values.chunks for value in chunk), *values.buffer])
        return None if not values else (percentile(values, 50), percentile(values, 95), values[-1])
    resources._three = three
    records = [job.record for job in status.select(states) if job.category in COUNTED]
    write_resources(sys.stdout, target.given, lambda: records, command.endswith("json"), command.endswith("csv"))
    sys.exit(0)
if command == "results":
    from batchrun.results.table import read_results
    from batchrun.results.tables import warn_skipped, write_table
    results = read_results(target)
    warn_skipped(results.skipped.lines())
    rows = [row for row in results.rows() if not states or row["state"] in states]
    write_table(sys.stdout, rows, results.parameter_names, results.metric_names, False)
    sys.exit(0)
if command == "failed":
    wanted = set(states)
    sys.stdout.write("".join(job.command + "\\n" for job in status.jobs if job.category in wanted and job.command))
    sys.exit(0)
jobs = status.select(states)
if command == "other-code":
    now = cli._code_now()  # asks git: once, not once per job
    jobs = [job for job in jobs if cli._other_code(job, now)]
listing = cli._listing(target, status, jobs)
if command == "csv":
    write_csv(sys.stdout, listing)
else:
    write_table(sys.stdout, listing, states, command == "show-command", counts_text, count)
"""


# `results` forms streamed in order (`results.order`), by a metric (loss), a parameter (seed; lr as text), a column (runtime).
_RESULTS_FORMS = [
    ["--json"],
    ["--csv", "--state", "failed", "--state", "removed"],
    ["--sort", "runtime", "--top", "2500"],
    ["--sort", "-line", "--csv"],
    ["--sort", "-loss", "--json", "--top", "40"],
    ["--sort", "seed", "--state", "succeeded"],
    ["--sort", "lr"],
    ["--sort", "-command", "--top", "5"],
    ["--best", "loss"],
    ["--best", "acc:max", "--sort", "-runtime", "--json"],
    ["--sort", "nothing"],
    ["--sort", "state", "--csv"],
    ["--sort", "-job_id", "--top", "300"],
    ["--over", "seed"],
    ["--over", "seed", "--over", "runtime", "--sort", "-loss", "--json", "--top", "30"],
    ["--over", "lr", "--csv", "--state", "succeeded"],
    ["--over", "seed", "--best", "acc:max"],
    ["--over", "seed", "--sort", "nothing"],
]


def _held(workdir: Path, command: str, *states: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-c", _HELD, command, "exp.runfile", *states], cwd=workdir, capture_output=True, text=True, timeout=240, check=False)
    return done.returncode, done.stdout, done.stderr


def _build(workdir: Path, lines: list[str], removed: list[str], name: str = "exp") -> None:
    """Every job of `lines` and `removed` in a state by its number, then `removed` dropped from the runfile `name`.runfile."""
    runfile_path = workdir / f"{name}.runfile"
    runfile_path.write_text("".join(f"{line}\n" for line in [*lines, *removed]))
    runfile = load_runfile(runfile_path)
    runs = RunsDir(workdir / "runs" / name)
    runs.create()
    journal = Journal(runs.path)
    journal.open()
    ignored = []
    for n, job in enumerate(runfile.jobs):
        kind, t = n % 11, 1_700_000_000.0 + n * 0.37
        if kind == 10:
            continue  # pending
        journal.record_start(job.job_id, 1 + n % 2, t, n % 4, "node1" if n % 3 else "node2", "cpus=2" if n % 5 == 0 else None, "v1" if n % 2 else "v2")
        journal.record_ref(job.job_id, 1, str(4000 + n))
        if kind == 9:
            continue  # running: no launch watches it, and no exit record says it ended
        journal.record_usage(job.job_id, 1, (1000 + n, 0.5, 0.25))
        if kind < 4:
            journal.record_end(job.job_id, 1, [0, 1, 124, 3][kind], t, t + n % 97 * 1.5, [None, None, State.TIMEOUT, None][kind])
        else:
            journal.record_unfinished(job.job_id, 1, t, t + 2.0, [State.INTERRUPTED, State.REQUEUED, State.KILLED, State.STOPPED, State.INTERRUPTED][kind - 4])
        if n % 13 == 0:
            ignored.append(job.job_id)
    journal.record_ignore(ignored)
    journal.sync()
    journal.close()
    logs = runs.logs
    MetadataView(runs.metadata).rebuild(
        (job.job_id, render_entry(job.job_id, build_entry(job, journal.records.get(job.job_id), f"{logs}/{job.job_id}"))) for job in runfile.jobs
    )
    runfile_path.write_text("".join(f"{line}\n" for line in lines))


def _with_metrics(workdir: Path, lines: list[str], name: str = "exp") -> None:
    for n, line in enumerate(lines):
        if n % 7 == 0:
            log_dir = workdir / "runs" / name / "logs" / job_id_of(line)
            log_dir.mkdir(parents=True, exist_ok=True)
            # A metric named like a parameter (seed) is left out of every row, and said so.
            extra = {"seed": n} if n % 3 == 0 else {}
            (log_dir / "metrics.jsonl").write_text(json.dumps({"loss": 1 / (n + 3), "acc": n % 10 / 10, **extra}) + "\n")


@pytest.mark.parametrize("sweep", [False, True], ids=["commands", "sweep"])
def test_streamed_reads_are_the_held_reads_to_the_byte(workdir: Path, sweep: bool) -> None:
    count = 2 * WINDOW + 1234 if not sweep else 3000
    if sweep:
        # A parameter named like a column (runtime) is left out of every row, and said so.
        lines = [f"python3 train.py --lr=0.{n % 9 + 1} --seed={n}" + (" --fast" if n % 4 == 0 else "") + (" --runtime=9" if n % 50 == 0 else "") for n in range(count)]
        removed = [f"python3 train.py --lr=0.5 --seed=-{n}" for n in range(40)]
    else:
        lines = [f"echo job {n}" if n % 3 else f"sh -c 'exit {n % 256}' {n}" for n in range(count)]
        removed = [f"echo removed {n}" for n in range(40)]
    _build(workdir, lines, removed)
    if sweep:
        _with_metrics(workdir, lines)
    cases = [
        (["status", "exp.runfile"], ("table",)),
        (["status", "exp.runfile", "--state", "failed", "--state", "removed"], ("table", "failed", "removed")),
        (["status", "exp.runfile", "--state", "pending"], ("table", "pending")),
        (["status", "exp.runfile", "--state", "ignored"], ("table", "ignored")),
        (["status", "exp.runfile", "--command"], ("show-command",)),
        (["status", "exp.runfile", "--csv"], ("csv",)),
        (["status", "exp.runfile", "--other-code"], ("other-code",)),
        (["status", "exp.runfile", "--json"], ("json",)),
        (["status", "exp.runfile", "--json", "--state", "failed", "--state", "removed", "--state", "running"], ("json", "failed", "removed", "running")),
        (["status", "exp.runfile", "--resources"], ("resources",)),
        (["status", "exp.runfile", "--resources", "--json", "--state", "failed"], ("resources-json", "failed")),
        (["status", "exp.runfile", "--resources", "--csv"], ("resources-csv",)),
        (["failed", "exp.runfile"], ("failed", State.FAILED, State.TIMEOUT, State.KILLED)),
        (["failed", "exp.runfile", "--interrupted"], ("failed", State.FAILED, State.TIMEOUT, State.KILLED, State.INTERRUPTED, State.REQUEUED)),
        (["results", "exp.runfile"], ("results",)),
        (["results", "exp.runfile", "--state", "succeeded", "--state", "removed"], ("results", "succeeded", "removed")),
        *((["results", "exp.runfile", *extra], ("results-held", *extra)) for extra in _RESULTS_FORMS),
    ]
    journal = (workdir / "runs" / "exp" / "jobs.journal").read_bytes()
    for argv, held in cases:
        streamed = run_batchrun(*argv, cwd=workdir, timeout=240)
        assert (streamed.returncode, streamed.stdout, streamed.stderr) == _held(workdir, *held), argv
    first = run_batchrun("status", "exp.runfile", cwd=workdir).stdout.splitlines()
    assert "removed" in first[0] and "ignored" in first[0] and "1 running" not in first[0]
    # Every job listed, in several windows (a removed line that never ran left nothing to list).
    assert count + 4 < len(first) <= count + len(removed) + 4
    assert (workdir / "runs" / "exp" / "jobs.journal").read_bytes() == journal, "a read command wrote to the journal"


def test_a_table_past_the_metrics_limit_counts_every_listed_job(workdir: Path) -> None:
    # Past `STATUS_METRICS_LIMIT` started jobs no metric column shows: an unfiltered table stops its
    # first pass there, a filtered one still counts every job it lists ("showing N jobs").
    from batchrun.results.best_so_far import STATUS_METRICS_LIMIT

    count = 6 * WINDOW  # windows past the one that passes the limit are still counted
    lines = [f"echo job {n}" if n % 3 else f"sh -c 'exit {n % 256}' {n}" for n in range(count)]
    _build(workdir, lines, [])
    _with_metrics(workdir, lines)
    started = ("succeeded", "failed", "timeout", "interrupted", "requeued", "killed", "stopped", "running")
    filtered = [word for state in started for word in ("--state", state)]
    listed = run_batchrun("status", "exp.runfile", *filtered, cwd=workdir)
    assert (listed.returncode, listed.stdout, listed.stderr) == _held(workdir, "table", *started)
    shown = int(listed.stdout.split("showing ", 1)[1].split(" ", 1)[0])
    header = next(line for line in listed.stdout.splitlines() if line.startswith("LINE"))
    assert shown > STATUS_METRICS_LIMIT and header.split()[-1] == "COMMAND" and "loss" not in header
    whole = run_batchrun("status", "exp.runfile", cwd=workdir)
    assert (whole.returncode, whole.stdout, whole.stderr) == _held(workdir, "table")
    assert len(whole.stdout.splitlines()) == count + 3


_SPACE = "metric: {name: loss, goal: minimize}\nparameters:\n  lr: {values: [0.1, 1e-3, 0.5]}\n  opt: {values: [adam, sgd, '007']}\n  seed: {values: [%s]}\n"
_SPECS = {
    "grid": "program: train.py\n" + _SPACE % ", ".join(map(str, range(1, 61))),
    "random": "program: train.py\nmethod: random\nrun_cap: 500\nseed: 3\n" + _SPACE.replace("{values: [0.1, 1e-3, 0.5]}", "{min: 0.0, max: 1.0}") % "1, 2, 3",
    "hyperband": "program: train.py\nearly_terminate: {type: hyperband, min_iter: 3, eta: 3}\n" + _SPACE % ", ".join(map(str, range(1, 61))),
    "bayes": "program: train.py\nmethod: bayes\nrun_cap: 500\n" + _SPACE.replace("{values: [0.1, 1e-3, 0.5]}", "{min: 0.0, max: 1.0}") % "1, 2, 3",
}


@pytest.mark.parametrize("kind", list(_SPECS))
def test_streamed_gridspec_reads_are_the_held_reads_to_the_byte(workdir: Path, kind: str) -> None:
    from batchrun.sweeps.gridspec import load_gridspec, write_runfile

    (workdir / "grid.yml").write_text(_SPECS[kind])
    spec = load_gridspec(workdir / "grid.yml")
    if kind == "bayes":  # as its launch appends them: a line per point proposed, after its header
        from batchrun.sweeps.bayes import BayesSpec

        bayes = BayesSpec(spec)
        lines = [bayes.command({"lr": n / 512, "opt": ["adam", "sgd", "007"][n % 3], "seed": n % 3 + 1}) for n in range(500)]
        header = "# batchrun: the points of a bayes search of grid.yml, one line each, appended as they are proposed"
    else:
        write_runfile(spec, workdir / "grid.runfile")
        lines, header = (workdir / "grid.runfile").read_text().splitlines(), None
    # A line edited by hand takes its parameters from its flags; a removed one is listed last.
    lines[5] = lines[5].replace("--seed=", "--seed=9")
    _build(workdir, lines, [lines[0] + " --again"], "grid")
    if header is not None:
        (workdir / "grid.runfile").write_text("".join(f"{line}\n" for line in [header, *lines]))
    _with_metrics(workdir, lines, "grid")
    forms = [["status", "grid.yml"], ["plan", "grid.yml"], ["results", "grid.yml", "--over", "seed", "--sort", "loss"], ["results", "grid.yml", "--sort", "-opt", "--json"]]
    if kind == "grid":
        forms += [
            ["status", "grid.yml", "--csv"],
            ["status", "grid.yml", "--json", "--state", "failed"],
            ["failed", "grid.yml"],
            ["results", "grid.yml"],
            ["results", "grid.yml", "--csv", "--over", "seed", "--over", "opt"],
            ["results", "grid.yml", "--best", "loss"],
        ]
    for argv in forms:
        streamed = run_batchrun(*argv, cwd=workdir, timeout=240)
        done = subprocess.run([sys.executable, "-c", _HELD, "cli-held", "-", *argv], cwd=workdir, capture_output=True, text=True, timeout=240, check=False)
        assert (streamed.returncode, streamed.stdout, streamed.stderr) == (done.returncode, done.stdout, done.stderr), argv
        assert streamed.returncode in (0, 1) and streamed.stdout, argv
