"""Unit tests of settlement: what becomes of jobs a killed launch left running."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.executors import jobfiles
from batchrun.launch.settle import Outcome, apply_decisions, journal_decisions, record_end, settle_in_flight, settle_one, watched_end
from batchrun.store.journal import Journal
from batchrun.store.records import JobRecord, State


def running_record(job_id: str, attempt: int = 1, start: float = 100.0) -> JobRecord:
    rec = JobRecord(job_id)
    rec.state, rec.attempts, rec.start, rec.ref = State.RUNNING, attempt, start, "123"
    return rec


def test_the_lock_is_probed_before_the_exit_record_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    read = jobfiles.read_exit_record

    def spy_read(log_dir: Path, attempt: int | None = None) -> tuple[int, float] | None:
        order.append("read")
        return read(log_dir, attempt)

    def probe(rec: JobRecord, log_dir: Path) -> bool:
        order.append("probe")
        return False

    monkeypatch.setattr(jobfiles, "read_exit_record", spy_read)
    settle_one(running_record("a" * 16), tmp_path, probe, 200.0)
    assert order == ["probe", "read"]


def test_a_job_that_ends_between_the_probe_and_the_read_is_collected(tmp_path: Path) -> None:
    def probe_then_end(rec: JobRecord, log_dir: Path) -> bool:
        (log_dir / jobfiles.EXIT_NAME).write_text("0 1\n")  # the job ends right after the probe
        return True

    decision = settle_one(running_record("a" * 16), tmp_path, probe_then_end, 200.0)
    assert (decision.outcome, decision.status, decision.attempt) == (Outcome.COLLECTED, 0, 1)


@pytest.mark.parametrize(
    ("running", "exit_text", "outcome"),
    [
        (False, None, Outcome.RERUN),
        (True, None, Outcome.ADOPTED),
        (False, "7 2\n", Outcome.COLLECTED),
        (True, "7 2\n", Outcome.COLLECTED),  # a stray child holds the lock; the job's shell ended
        (False, "1 1\n", Outcome.RERUN),  # attempt 1's record, attempt 2 never spawned
        (True, "1 1\n", Outcome.ADOPTED),
        (False, "7\n", Outcome.COLLECTED),  # an old record, naming no attempt
        (False, "7", Outcome.RERUN),  # torn: not a whole line
    ],
)
def test_outcomes(tmp_path: Path, running: bool, exit_text: str | None, outcome: Outcome) -> None:
    if exit_text is not None:
        (tmp_path / jobfiles.EXIT_NAME).write_text(exit_text)
    decision = settle_one(running_record("a" * 16, attempt=2), tmp_path, lambda rec, log_dir: running, 200.0)
    assert decision.outcome == outcome
    assert decision.attempt == 2 and decision.start == 100.0


def test_the_journal_and_memory_tell_the_same_story(tmp_path: Path) -> None:
    """A launch journals the decisions, `status` applies them: the records agree."""
    runs = tmp_path / "runs"
    runs.mkdir()
    ids = ["a" * 16, "b" * 16, "c" * 16, "d" * 16]
    journal = Journal(runs)
    journal.open()
    for job_id in ids:
        journal.record_start(job_id, 1, 100.0, 0, "host")
        journal.record_ref(job_id, 1, "123")
    journal.record_end(ids[3], 1, 0, 100.0, 150.0)
    for job_id, text in zip(ids[:2], ["0 1\n", "3 1\n"], strict=True):
        (runs / job_id).mkdir()
        (runs / job_id / jobfiles.EXIT_NAME).write_text(text)
    (runs / ids[2]).mkdir()
    decisions = settle_in_flight(journal.records, lambda job_id: runs / job_id, lambda rec, log_dir: False, 200.0)
    assert [d.outcome for d in decisions] == [Outcome.COLLECTED, Outcome.COLLECTED, Outcome.RERUN]
    journal_decisions(journal, decisions)
    journal.close()
    replayed = Journal(runs)
    replayed.load()
    # What `status` read before the launch settled them: three running, one ended.
    in_memory = {job_id: running_record(job_id) for job_id in ids[:3]}
    in_memory[ids[3]] = replayed.records[ids[3]]
    apply_decisions(in_memory, decisions)

    def key(rec: JobRecord) -> tuple[object, ...]:
        return (rec.state, rec.status, rec.attempts, rec.start, rec.exit_codes)

    assert {j: key(r) for j, r in in_memory.items()} == {j: key(r) for j, r in replayed.records.items()}
    assert [replayed.records[j].state for j in ids] == [State.SUCCEEDED, State.FAILED, State.INTERRUPTED, State.SUCCEEDED]


def test_a_job_its_cluster_stopped_at_its_time_limit_is_a_timeout_never_a_failure(tmp_path: Path) -> None:
    """SLURM's --time: the supervisor died with the job, so no record says how it ended; the executor says it timed out."""
    end = watched_end(tmp_path, 1, jobfiles.Unrecorded.TIMED_OUT, None, False)
    assert (end.state, end.status) == (State.TIMEOUT, None)
    # Stopped by the launch meanwhile (Ctrl-C): the stop's state, with no made-up status.
    end = watched_end(tmp_path, 1, jobfiles.Unrecorded.TIMED_OUT, State.INTERRUPTED, True)
    assert (end.state, end.status) == (State.INTERRUPTED, None)
    journal = Journal(tmp_path)
    journal.open()
    rec = record_end(journal, "a" * 16, 1, 1.0, 2.0, watched_end(tmp_path, 1, jobfiles.Unrecorded.TIMED_OUT, None, False))
    assert (rec.state, rec.exit_codes, rec.finished) == (State.TIMEOUT, [None], True)
    journal.close()
    replay = Journal(tmp_path)
    replay.load()
    replayed = replay.records["a" * 16]
    assert (replayed.state, replayed.exit_codes) == (State.TIMEOUT, [None])
