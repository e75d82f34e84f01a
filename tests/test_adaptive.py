"""The bayes job source: free slots, run_cap, the runfile as the record, and the end of the search."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from batchrun.errors import BatchrunError, RunfileError
from batchrun.launch.adaptive import AdaptiveSweep, BayesFeed, load_sweep
from batchrun.runfile.file import Job, Runfile, append_commands, load_runfile
from batchrun.store.records import JobRecord
from batchrun.sweeps.objective import run_values

SPEC = """\
program: train.py
method: bayes
metric: {name: loss, goal: minimize}
run_cap: 5
parameters:
  x: {min: 0.0, max: 1.0}
  n: {values: [1, 2]}
"""


class FakeLaunch:
    """What the feed uses of a launch: its runfile, records, options and add_jobs."""

    def __init__(self, tmp_path: Path, n_jobs: int) -> None:
        path = tmp_path / "spec.runfile"
        path.write_text("")
        self.runfile = load_runfile(path)
        self.journal = SimpleNamespace(records={})
        self.control = SimpleNamespace(lock=threading.RLock(), fail=self.fail)
        self.options = SimpleNamespace(n_jobs=n_jobs)
        self.runs_dir = SimpleNamespace(logs=tmp_path / "logs")
        self.errors: list[BatchrunError] = []
        self.stopping = False

    def should_stop_dispatch(self) -> bool:
        return self.stopping

    def fail(self, error: BatchrunError) -> None:
        self.errors.append(error)

    def end(self, job: Job, state: str, loss: float | None) -> None:
        rec = JobRecord(job.job_id)
        rec.state = state
        rec.attempts = 1
        self.journal.records[job.job_id] = rec
        if loss is not None:
            log = self.runs_dir.logs / job.job_id
            log.mkdir(parents=True, exist_ok=True)
            (log / "metrics.jsonl").write_text(json.dumps({"loss": loss}) + "\n")

    def is_done(self, job_id: str) -> bool:
        return self.done(job_id)

    def done(self, job_id: str) -> bool:
        rec = self.journal.records.get(job_id)
        return rec is not None and rec.state in ("succeeded", "failed", "stopped")


def _feed(tmp_path: Path, n_jobs: int = 2) -> tuple[BayesFeed, FakeLaunch]:
    spec_path = tmp_path / "spec.yml"
    spec_path.write_text(SPEC)
    sweep = load_sweep(spec_path)
    assert sweep.bayes is not None
    launch = FakeLaunch(tmp_path, n_jobs)
    return BayesFeed(sweep.bayes, launch), launch


def test_the_feed_fills_free_slots_up_to_run_cap_then_ends(tmp_path: Path) -> None:
    feed, launch = _feed(tmp_path)
    first = feed.next_jobs(100, launch.done)
    assert first is not None and len(first) == 2
    assert load_runfile(launch.runfile.path).jobs == first, "the points are in the runfile before they start"
    assert feed.next_jobs(100, launch.done) == [], "no free slot: nothing yet"
    launch.end(first[0], "succeeded", 0.5)
    again = feed.next_jobs(100, launch.done)
    assert again is not None and len(again) == 1
    for job in (first[1], again[0]):
        launch.end(job, "failed", None)
    more = feed.next_jobs(100, launch.done)
    assert more is not None and len(more) == 2  # 3 finished + 2 in flight = run_cap 5
    assert feed.next_jobs(100, launch.done) == []
    launch.end(more[0], "stopped", 0.7)
    assert feed.next_jobs(100, launch.done) == [], "run_cap is reached once the last one finishes: wait for it"
    launch.end(more[1], "succeeded", 0.2)
    assert feed.next_jobs(100, launch.done) is None
    values = sorted(run_values(feed._metrics(job, launch.journal.records[job.job_id]), "loss")[0]
                    for job in launch.runfile.jobs if (launch.runs_dir.logs / job.job_id).exists())
    assert values == [0.2, 0.5, 0.7], "a stopped run is valued by what it logged"
    assert len(launch.runfile.jobs) == 5 and feed.proposed == 5
    commands = [job.command for job in load_runfile(launch.runfile.path).jobs]
    assert len(set(commands)) == 5


def test_the_plans_jobs_come_first(tmp_path: Path) -> None:
    feed, launch = _feed(tmp_path)
    earlier = append_commands(launch.runfile, ["echo a", "echo b", "echo c"])
    launch.end(earlier[1], "succeeded", None)
    feed = BayesFeed(feed.spec, launch, earlier)
    assert feed.next_jobs(1, launch.done) == [earlier[0]]
    assert feed.next_jobs(5, launch.done) == [earlier[2]], "a job done meanwhile is skipped"
    assert feed.next_jobs(5, launch.done) == [], "both slots are taken by the plan's jobs"


def test_a_limit_smaller_than_the_free_slots_is_kept(tmp_path: Path) -> None:
    feed, launch = _feed(tmp_path, n_jobs=4)
    jobs = feed.next_jobs(1, launch.done)
    assert jobs is not None and len(jobs) == 1


def test_a_stopping_launch_gets_no_more_points(tmp_path: Path) -> None:
    feed, launch = _feed(tmp_path)
    launch.stopping = True
    assert feed.next_jobs(10, launch.done) is None
    assert launch.runfile.jobs == []


def test_hand_written_lines_take_slots_but_not_run_cap(tmp_path: Path) -> None:
    feed, launch = _feed(tmp_path)
    launch.runfile.path.write_text("echo by hand\n")
    launch.runfile = load_runfile(launch.runfile.path)
    jobs = feed.next_jobs(10, launch.done)
    assert jobs is not None and len(jobs) == 1, "one of two slots runs the hand-written line"
    launch.end(launch.runfile.jobs[0], "succeeded", None)
    launch.end(jobs[0], "succeeded", 1.0)
    jobs = feed.next_jobs(10, launch.done)
    assert jobs is not None and len(jobs) == 2


def test_a_runfile_that_cannot_be_appended_to_fails_the_launch_in_one_line(tmp_path: Path) -> None:
    feed, launch = _feed(tmp_path)
    launch.runfile.path.unlink()
    launch.runfile.path.mkdir()
    assert feed.next_jobs(10, launch.done) is None
    assert len(launch.errors) == 1 and "cannot append the next points" in str(launch.errors[0])


def test_append_commands_adds_a_newline_to_an_unterminated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "r.runfile"
    path.write_text("echo a")
    runfile = load_runfile(path)
    jobs = append_commands(runfile, ["echo b", "echo a", "echo b", "echo c"])
    assert [j.command for j in jobs] == ["echo b", "echo c"] and [j.lineno for j in jobs] == [2, 3]
    assert path.read_text() == "echo a\necho b\necho c\n"
    assert runfile.digest == load_runfile(path).digest
    assert append_commands(runfile, ["echo a"]) == []


def test_load_sweep_and_create_runfile(workdir: Path) -> None:
    """The runfile of spec.yml is spec.runfile in the current directory, as `batchrun sweep` writes it."""
    tmp_path = workdir
    with pytest.raises(RunfileError, match="no such gridspec"):
        load_sweep(tmp_path / "missing.yml")
    spec = tmp_path / "g.yml"
    spec.write_text("program: p\nmethod: random\nrun_cap: 3\nmetric: {name: loss, goal: maximize}\n"
                    "early_terminate: {type: hyperband, min_iter: 3}\nparameters:\n  x: {min: 0.0, max: 1.0}\n")
    sweep = load_sweep(spec)
    assert sweep.bayes is None and sweep.stopper is not None
    assert sweep.plan_line(Runfile(tmp_path / "g.runfile", []), None) == (
        "hyperband stops runs worse than the top 1/3 at 3, 9, 27, 81, ... logged values of loss")
    bayes = tmp_path / "spec.yml"
    bayes.write_text(SPEC)
    made = load_sweep(bayes)
    assert isinstance(made, AdaptiveSweep) and made.runfile == Path("spec.runfile")
    made.create_runfile()
    made.create_runfile()  # kept as it is
    assert load_runfile(made.runfile).jobs == []
    assert made.runfile.read_text().startswith("# batchrun: the points of a bayes search of spec.yml")
