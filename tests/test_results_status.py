"""Metrics outside `batchrun results`: status's metric columns and the live display's best so far."""

from __future__ import annotations

import io
from pathlib import Path

from conftest import run_batchrun

from batchrun.cli.display import Progress
from batchrun.launch.launch import JobEvent
from batchrun.results.best_so_far import BestSoFar
from batchrun.runfile.file import Job, job_id_of
from batchrun.store.records import JobRecord, State


def test_status_shows_metric_columns(make_runfile, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    lines = [
        'echo "{\\"loss\\": 0.5, \\"acc\\": 0.75}" >> "$BATCHRUN_METRICS"',
        'echo "{\\"loss\\": 0.25}" >> "$BATCHRUN_METRICS"; echo "{\\"_summary\\": {\\"loss\\": 0.125}}" >> "$BATCHRUN_METRICS"',
        "echo no metrics",
    ]
    make_runfile(lines)
    assert run_batchrun("launch", "exp.runfile", "-q", cwd=workdir).returncode == 0
    out = run_batchrun("status", "exp.runfile", cwd=workdir).stdout.splitlines()
    assert out[2].split() == ["LINE", "ID", "STATE", "EXIT", "RUNTIME", "START", "loss", "acc", "COMMAND"]
    values = {row.split()[0]: row.split()[5:8] for row in out[3:]}
    assert values["1"][1:] == ["0.5", "0.75"]
    assert values["2"][1:] == ["0.125", "echo"]  # the summary wins; no acc
    assert values["3"][1:] == ["echo", "no"]  # no metrics: blank cells, then the command


def _end(progress: Progress, line: int, command: str, state: str = State.SUCCEEDED) -> None:
    job = Job(command, job_id_of(command), line)
    rec = JobRecord(job.job_id)
    rec.state, rec.status, rec.start, rec.end, rec.attempts = state, 0, 1.0, 2.0, 1
    progress(JobEvent("end", job, rec, 0))


def test_live_display_shows_the_best_so_far(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    commands = {3: "run a", 17: "run b", 20: "run c", 21: "run d"}
    values = {3: '{"loss": 0.5}\n', 17: '{"loss": 0.123, "_step": 1}\n', 20: '{"loss": 0.3}\nnot json\n', 21: ""}
    for line, command in commands.items():
        (logs / job_id_of(command)).mkdir(parents=True)
        (logs / job_id_of(command) / "metrics.jsonl").write_text(values[line])
    progress = Progress(io.StringIO(), total=5, done_before=0, failed_before=0, n_jobs=1)
    progress.best = BestSoFar(logs)
    assert "best" not in progress.status_text()
    _end(progress, 99, "no metrics file")
    assert "best" not in progress.status_text()
    for line, command in commands.items():
        _end(progress, line, command)
    assert progress.status_text().endswith(" | best loss 0.123, line 17")
    highest = BestSoFar(logs, "loss", "max")
    for line, command in commands.items():
        highest.update(job_id_of(command), line)
    assert highest.text() == "best loss 0.5, line 3"
    assert BestSoFar(logs, "acc").text() is None


def test_launch_of_a_gridspec_uses_its_metric(workdir: Path) -> None:
    """End to end, on a terminal-less launch the display's helper is wired to the gridspec's metric and goal."""
    from batchrun.cli import launch as cli

    (workdir / "g.yml").write_text("program: echo\nmetric:\n  name: acc\n  goal: maximize\nparameters:\n  x:\n    values: [1]\n")
    best = cli._best_so_far(Path("g.yml"), type("R", (), {"logs": workdir / "logs"})())
    assert (best.metric, best.goal) == ("acc", "max")
    assert cli._best_so_far(Path("exp.runfile"), type("R", (), {"logs": workdir})()).metric is None
