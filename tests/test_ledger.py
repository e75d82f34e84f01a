"""`store.ledger.Ledger`: a runfile's jobs beside their records, answered over state bytes."""

from __future__ import annotations

import hashlib
import random
from array import array

from batchrun.runfile.jobtable import Job
from batchrun.store.ledger import Ledger, _missing
from batchrun.store.records import JobRecord, State


def _job(i: int) -> Job:
    command = f"run {i}"
    return Job(command, hashlib.sha256(command.encode()).hexdigest()[:16], i + 1)


def test_failed_jobs_are_made_when_asked_in_runfile_order_with_their_records() -> None:
    # A launch's result names every failed job, but its readers print a few
    # and count the rest: the ledger hands them out by index, not as a list.
    jobs = [_job(i) for i in range(40)]
    records = {}
    for i, job in enumerate(jobs):
        if i % 3 == 0:
            continue  # never ran: pending, not failed
        rec = JobRecord(job.job_id)
        rec.state = State.FAILED if i % 4 == 0 else State.TIMEOUT if i % 5 == 0 else State.SUCCEEDED
        rec.status = 1 if rec.state == State.FAILED else None if rec.state == State.TIMEOUT else 0
        records[job.job_id] = rec
    failed = Ledger.of(jobs, records).failed()
    expected = [i for i in range(40) if i % 3 and (i % 4 == 0 or i % 5 == 0)]
    assert len(failed) == len(expected) == 10
    assert [job.lineno for job, _ in failed] == [i + 1 for i in expected]
    assert [(rec.job_id, rec.state, rec.status) for _, rec in failed[:2]] == [
        (jobs[4].job_id, State.FAILED, 1),
        (jobs[5].job_id, State.TIMEOUT, None),
    ]
    assert failed[-1][0] is not None and failed[-1][0].job_id == jobs[expected[-1]].job_id
    assert [job.job_id for job, _ in failed[3:5]] == [jobs[i].job_id for i in expected[3:5]]
    assert not Ledger.of(jobs[:1], {}).failed()


def test_removed_ids_follow_records_made_and_deleted_since_the_last_answer() -> None:
    # A launch asks at its plan and again at its end: records its jobs made meanwhile keep the
    # first answer, any other record made or deleted is counted anew.
    jobs = [_job(i) for i in range(6)]
    gone, later = _job(10), _job(11)
    ledger = Ledger.of(jobs, {job.job_id: JobRecord(job.job_id) for job in [jobs[0], gone]})
    records = ledger.records
    assert ledger.removed_ids() == [gone.job_id]
    records[jobs[3].job_id] = JobRecord(jobs[3].job_id)
    records[jobs[4].job_id] = JobRecord(jobs[4].job_id)
    assert ledger.removed_ids() == [gone.job_id]
    records[later.job_id] = JobRecord(later.job_id)
    assert ledger.removed_ids() == [gone.job_id, later.job_id]
    del records[gone.job_id]
    assert ledger.removed_ids() == [later.job_id]
    records[jobs[5].job_id] = JobRecord(jobs[5].job_id)
    del records[jobs[3].job_id]
    assert ledger.removed_ids() == [later.job_id]
    assert Ledger.of(jobs, dict(records.items())).removed_ids() == [later.job_id]


def test_the_rows_no_job_holds_are_every_other_number_in_order() -> None:
    """`_missing` marks the rows held in a byte each: the same answer as a set would give, -1 (no record) passed over."""
    chance = random.Random(28)
    for _ in range(500):
        count = chance.randint(0, 80)
        rows = chance.sample(range(count), chance.randint(0, count)) + [-1] * chance.randint(0, 4)
        chance.shuffle(rows)
        held = set(rows)
        assert _missing(array("q", rows), count) == [row for row in range(count) if row not in held]
