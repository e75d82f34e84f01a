"""batchrun.launch.quickresume: a relaunch answered from the fingerprint says exactly what the full path says.

Each scenario finishes a launch (which leaves the fingerprint), changes
something, then relaunches twice from the same copy of the directory: once
as it is and once with the fingerprint deleted (the full path). The plan
line, the summary, the warnings, the exit code and the records must be the
same; the fingerprint's file shows which path answered (the full path
rewrites it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from conftest import REPO, batchrun_cmd

from batchrun.errors import LockedError, MetadataError
from batchrun.launch.hold import RunsDirHold
from batchrun.launch.launch import _tally
from batchrun.launch.options import LaunchOptions
from batchrun.launch.plan import make_plan
from batchrun.launch.quickresume import answer_from_fingerprint, plan_of
from batchrun.runfile.file import Runfile, job_id_of, load_runfile
from batchrun.store.fingerprint import FINGERPRINT_NAME, Summary, journal_digest, read_fingerprint, summary_of
from batchrun.store.jobsnapshot import read_sections
from batchrun.store.journal import Journal
from batchrun.store.records import USAGE_FIELDS, JobRecord, State
from batchrun.store.resume import _block_digests, read_resume
from batchrun.store.rundir import RunsDir

FAULTS = Path(__file__).resolve().parent / "data" / "faults"
LINES = ["true 1", "exit 3", "echo two", "true 1", "# a comment", "", "sh -c 'exit 300'", "echo é"]


def _index(runfile: Runfile, records: Mapping[str, JobRecord], journal: Journal) -> Summary | None:
    """The summary a launch's `finish` writes into the fingerprint for these records (its tally, then `summary_of`)."""
    counts, failed = _tally(runfile.jobs, dict(records))
    return summary_of(runfile, records, counts, failed, journal.path, journal.size)


def read_index(runs: Path) -> Summary | None:
    """The summary of the fingerprint the last launch left, if any."""
    fingerprint = read_fingerprint(runs)
    return fingerprint.summary if fingerprint is not None else None


def _launch(work: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(batchrun_cmd("launch", "exp.runfile", "-j", "1", *args), cwd=work, capture_output=True, text=True, timeout=120, env=env)
    # Durations are the only thing two runs of the same jobs may print differently.
    return done.returncode, re.sub(r"\d+\.\d\ds", "T", done.stdout), done.stderr


def _index_stat(work: Path) -> tuple[int, int] | None:
    try:
        meta = (work / "runs" / "exp" / FINGERPRINT_NAME).stat()
    except FileNotFoundError:
        return None
    return meta.st_ino, meta.st_mtime_ns


def _states(work: Path) -> dict[str, tuple[str, int | None, bool]] | None:
    journal = Journal(work / "runs" / "exp")
    try:
        journal.load()
    except MetadataError:
        return None  # a damaged journal: both paths must leave it so
    return {job_id: (rec.state, rec.status, rec.ignored) for job_id, rec in journal.records.items()}


def _view(work: Path) -> list[tuple[str, dict[str, object]]] | None:
    """metadata.json's entries in order, without what two runs of a job may record differently (times, pid, slot, what it used)."""
    try:
        entries = json.loads((work / "runs" / "exp" / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    volatile = {"start", "end", "runtime", "pid", "job_ref", "slot", *USAGE_FIELDS}
    return [(job_id, {k: v for k, v in entry.items() if k not in volatile}) for job_id, entry in entries.items()]


def _both(work: Path, *args: str, quick: bool, resume: bool | None = None) -> tuple[int, str, str]:
    """Relaunch as the directory is, and again from a copy of it with the fingerprint gone; the same answer.

    `resume`: whether the first relaunch starts from the fingerprint's snapshot (`store.resume`), when the test says.
    """
    saved = work.parent / (work.name + ".saved")
    shutil.rmtree(saved, ignore_errors=True)
    shutil.copytree(work, saved, symlinks=True)
    before = _index_stat(work)
    if resume is not None:
        assert (read_resume(RunsDir(work / "runs" / "exp"), work / "exp.runfile") is not None) == resume
    fast = _launch(work, *args)
    took_quick = before is not None and _index_stat(work) == before
    fast_states, fast_view = _states(work), _view(work)
    shutil.rmtree(work)
    shutil.copytree(saved, work, symlinks=True)
    (work / "runs" / "exp" / FINGERPRINT_NAME).unlink(missing_ok=True)
    slow = _launch(work, *args)
    assert fast == slow
    assert fast_states == _states(work)
    assert fast_view == _view(work)
    assert took_quick == quick, "the quick path did not answer" if quick else "the quick path answered"
    # The full path leaves a fingerprint again: a relaunch of it answers the same.
    return fast


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    work = tmp_path / "w"
    work.mkdir()
    (work / "exp.runfile").write_text("".join(f"{line}\n" for line in LINES), encoding="utf-8")
    _launch(work)
    assert read_index(work / "runs" / "exp") is not None
    return work


def _append_journal(work: Path, text: str) -> None:
    with open(work / "runs" / "exp" / "jobs.journal", "a") as f:
        f.write(text)


def _edit_runfile(work: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path = work / "exp.runfile"
    path.write_text("".join(f"{line}\n" for line in edit(path.read_text().splitlines())), encoding="utf-8")


def test_a_no_op_relaunch_is_answered_quickly_and_the_same(work: Path) -> None:
    code, out, err = _both(work, quick=True)
    assert code == 1
    assert "0 to run" in out and "failed (exit 3)" in out and "failed (exit 44)" in out
    assert "same command as line 1" in err
    _both(work, "-q", quick=True)
    _both(work, "--order", "shuffle", "--seed", "7", quick=True)


def test_retry_failed_runs_them_on_the_full_path_then_is_quick(work: Path) -> None:
    _edit_runfile(work, lambda lines: [line for line in lines if "exit" not in line])
    _both(work, "--retry-failed", quick=False)  # the runfile changed
    _launch(work)
    _both(work, "--retry-failed", quick=True)
    _both(work, quick=True)


def test_retry_failed_with_failures_and_overwrite_take_the_full_path(work: Path) -> None:
    _both(work, "--retry-failed", quick=False)
    _both(work, "--rerun-all", quick=False)


@pytest.mark.parametrize(
    "edit",
    [
        lambda lines: [*lines, "echo new 1", "echo new 2"],
        lambda lines: [lines[0], "echo inserted", *lines[1:]],
        lambda lines: [line if line != "echo two" else "echo TWO" for line in lines],
        lambda lines: lines[2:],
        lambda lines: list(reversed(lines)),
        lambda lines: [*lines[:-1], lines[-1] + " "],  # same commands, other text
    ],
    ids=["appended", "inserted", "edited-middle", "deleted", "reordered", "trailing-space"],
)
def test_an_edited_runfile_takes_the_full_path_then_is_quick(work: Path, edit: Callable[[list[str]], list[str]]) -> None:
    _edit_runfile(work, edit)
    _both(work, quick=False, resume=True)  # the records from the snapshot, whatever the runfile became
    _launch(work)
    _both(work, quick=True)  # removed jobs and new line numbers, from the index


@pytest.mark.parametrize(
    "journal_text",
    [
        f"R {job_id_of('echo two')}\n",  # doit forget
        f"X {job_id_of('echo two')}\nX {job_id_of('exit 3')}\n",  # doit ignore
        f"X {job_id_of('not in the runfile')}\n",
        "E 0123",  # a torn last line
    ],
    ids=["forgotten", "ignored", "ignored-removed", "torn"],
)
def test_a_grown_journal_takes_the_full_path_then_is_quick(work: Path, journal_text: str) -> None:
    _append_journal(work, journal_text)
    _both(work, quick=False, resume=True)  # only the journal's new lines replayed
    _both(work, quick=True)


def test_a_journal_rewritten_to_the_same_size_takes_the_full_path(work: Path) -> None:
    path = work / "runs" / "exp" / "jobs.journal"
    data = path.read_bytes()
    # Another exit status of the same width: only the digest tells.
    path.write_bytes(data.replace(f"E {job_id_of('exit 3')} 1 3 ".encode(), f"E {job_id_of('exit 3')} 1 0 ".encode()))
    assert path.read_bytes() != data
    _both(work, quick=False, resume=False)


def test_a_damaged_journal_gives_the_same_error(work: Path) -> None:
    _append_journal(work, "garbage line\nR 0123456789abcdef\n")
    code, _, err = _both(work, quick=False, resume=True)
    assert code == 2 and "corrupt job journal line" in err


def test_a_lost_journal_is_rebuilt_with_the_same_notice(work: Path) -> None:
    (work / "runs" / "exp" / "jobs.journal").unlink()
    _, _, err = _both(work, quick=False, resume=False)
    assert "journal" in err
    _both(work, quick=True)


@pytest.mark.parametrize("damage", [b"", b"garbage\n", b"\0\0\0"], ids=["empty", "garbage", "nul"])
def test_a_damaged_fingerprint_takes_the_full_path(work: Path, damage: bytes) -> None:
    (work / "runs" / "exp" / FINGERPRINT_NAME).write_bytes(damage)
    _both(work, quick=False)


def test_edited_metadata_or_a_missing_fingerprint_take_the_full_path(work: Path) -> None:
    runs = work / "runs" / "exp"
    (runs / FINGERPRINT_NAME).unlink()
    _both(work, quick=False)
    os.utime(runs / "metadata.json", ns=(1, 1))
    _both(work, quick=False)
    _both(work, quick=True)


def test_another_metadata_name_takes_the_full_path(work: Path) -> None:
    _both(work, "--state_db_filename", "other.json", quick=False)


def test_the_original_tools_metadata_is_imported_the_same(tmp_path: Path) -> None:
    work = tmp_path / "w"
    (work / "runs" / "exp").mkdir(parents=True)
    (work / "exp.runfile").write_text("true 1\ntrue 2\n")
    legacy = {job_id_of("true 1"): {"command": "true 1", "status": 0, "start": 1.0, "runtime": 2.0}}
    import json

    (work / "runs" / "exp" / "metadata.json").write_text(json.dumps(legacy))
    _, out, _ = _both(work, quick=False)
    assert "1 already succeeded" in out
    _both(work, quick=True)


def test_a_kill_9_mid_launch_leaves_no_fingerprint_of_its_journal(work: Path) -> None:
    _edit_runfile(work, lambda lines: [*lines, "echo a", "echo b", "echo c"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(FAULTS), str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    code, _, _ = _launch(work, env={**env, "BRFAULT_KILL_SPAWN": "2"})
    assert code == -signal.SIGKILL
    # The last clean launch's fingerprint may stay for the view, but with no summary to answer from.
    assert read_index(work / "runs" / "exp") is None
    states = _states(work)
    assert states is not None and any(state == State.RUNNING for state, _, _ in states.values())
    _both(work, quick=False, resume=True)  # settles what the killed launch left, its lines replayed on the snapshot
    _both(work, quick=True)


def test_a_relaunch_in_a_busy_directory_fails_the_same(work: Path) -> None:
    import fcntl

    fd = os.open(work / "runs" / "exp" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fast = _launch(work)
        (work / "runs" / "exp" / FINGERPRINT_NAME).unlink()
        slow = _launch(work)
    finally:
        os.close(fd)
    assert fast == slow
    assert fast[0] == 2 and "another batchrun launch" in fast[2]


@pytest.mark.parametrize("mode", ["resume", "retry_failed"])
def test_plan_of_is_make_plans_answer(tmp_path: Path, work: Path, mode: str) -> None:
    _edit_runfile(work, lambda lines: [line for line in lines if "exit" not in line])
    _append_journal(work, f"X {job_id_of('echo two')}\nR {job_id_of('exit 3')}\n")
    _launch(work, "--retry-failed")
    runs = work / "runs" / "exp"
    journal = Journal(runs)
    journal.load()
    runfile = load_runfile(work / "exp.runfile")
    index = _index(runfile, journal.records, journal)
    assert index is not None and index == read_index(runs)
    assert plan_of(index, mode) == make_plan(runfile.jobs, journal.records, mode)


def test_the_answer_declines_other_executors_follow_and_overwrite(work: Path) -> None:
    runfile = work / "exp.runfile"
    accounting = work / "runs" / "exp"
    hold = RunsDirHold(RunsDir(accounting))
    hold.take()
    try:
        assert answer_from_fingerprint(hold, runfile, LaunchOptions(accounting_dir=accounting, executor="slurm")) is None
        assert answer_from_fingerprint(hold, runfile, LaunchOptions(accounting_dir=accounting, follow=True)) is None
        assert answer_from_fingerprint(hold, runfile, LaunchOptions(accounting_dir=accounting, mode="overwrite")) is None
        quick = answer_from_fingerprint(hold, runfile, LaunchOptions(accounting_dir=accounting))
        assert quick is not None and quick.plan.nothing_to_do
        # The hold is the launch's: a second launch is refused while it is held.
        with pytest.raises(LockedError):
            RunsDirHold(RunsDir(accounting)).take()
    finally:
        hold.release()
    hold.release()  # twice is fine
    again = RunsDirHold(RunsDir(accounting))
    again.take()
    again.release()


@pytest.mark.parametrize("mode", ["resume", "retry_failed", "overwrite"])
@pytest.mark.parametrize("ignored", [False, True])
@pytest.mark.parametrize("state", [s for s in State.ALL if s != State.RUNNING])
def test_plan_of_agrees_with_make_plan_for_every_state(tmp_path: Path, mode: str, ignored: bool, state: State) -> None:
    """One job of each state beside finished ones, ignored or not: the same plan, or None when it would run."""
    runfile = load_runfile(_write(tmp_path, ["true 1", "true 2", "echo removed-later"]))
    journal = Journal(tmp_path)
    journal.open()
    for job in runfile.jobs[:2]:
        journal.record_end(job.job_id, 1, 0, 1.0, 2.0)
    subject = runfile.jobs[2]
    if state in (State.SUCCEEDED, State.FAILED, State.TIMEOUT):
        journal.record_end(subject.job_id, 1, 0 if state == State.SUCCEEDED else 7, 1.0, 2.0, None if state != State.TIMEOUT else state)
    elif state != State.PENDING:
        journal.record_unfinished(subject.job_id, 1, 1.0, 2.0, state)
    if ignored:
        journal.record_ignore([subject.job_id])
    journal.record_end("00000000000000ff", 1, 0, 1.0, 2.0)  # a job no longer in the runfile
    journal.close()
    index = _index(runfile, journal.records, journal)
    assert index is not None
    expected = make_plan(runfile.jobs, journal.records, mode)
    got = plan_of(index, mode)
    if expected.nothing_to_do:
        assert got == expected
    else:
        assert got is None
    # The summary's counts and failures, as `finish` tallies them.
    counts, failed = _tally(runfile.jobs, journal.records)
    assert index.counts == counts
    assert [(job, rec.state, rec.status) for job, rec in index.failed_jobs()] == [(job, rec.state, rec.status) for job, rec in failed]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "u.runfile"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# -- the snapshot: a relaunch that starts from the last launch's tables -------------------


@pytest.fixture()
def big(tmp_path: Path) -> Path:
    """A finished launch of a runfile of many blocks (`resume._BLOCK`): 1,200 jobs behind a long comment, with a repeat."""
    work = tmp_path / "big"
    work.mkdir()
    lines = ["# " + "x" * 70] * 1000 + [f"true {i} {'y' * 40}" for i in range(1200)] + ["true 7 " + "y" * 40, "exit 5"]
    (work / "exp.runfile").write_text("".join(f"{line}\n" for line in lines))
    code, _, _ = _launch(work, "-j", "4")
    assert code == 1
    return work


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit",
    [
        lambda lines: [*lines, "echo new 1", "true 3 " + "y" * 40, "echo new 2"],  # appended, one a repeat of an old line
        lambda lines: [*lines[:-50], *(f"echo replaced {i}" for i in range(50))],  # the last lines replaced
        lambda lines: [*lines[:600], "echo inserted", *lines[600:]],  # in an unchanged block's middle
        lambda lines: [*lines[:1500], "", "# a comment", *lines[1500:]],  # line numbers shift from there
        lambda lines: [*lines[:1100], *lines[1300:], *lines[1100:1300]],  # moved lines: removed and back
        lambda lines: lines[:1300],  # jobs removed: their entries go after the runfile's
    ],
    ids=["appended", "replaced", "inserted-comment-block", "blank-and-comment", "moved", "shortened"],
)
def test_a_relaunch_from_the_snapshot_says_and_leaves_what_the_full_path_does(big: Path, edit: Callable[[list[str]], list[str]]) -> None:
    _edit_runfile(big, edit)
    _both(big, quick=False, resume=True)
    # The launch after it starts from the snapshot that relaunch left.
    _edit_runfile(big, lambda lines: [*lines, "echo after"])
    _both(big, quick=False, resume=True)


@pytest.mark.slow
def test_crlf_and_bom_runfiles_resume_the_same(big: Path) -> None:
    path = big / "exp.runfile"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n") + b"echo crlf\r\n")
    _both(big, quick=False, resume=True)
    with open(path, "ab") as f:
        f.write(b"echo more\r\n")
    _both(big, quick=False, resume=True)


def test_a_moved_runs_directory_or_an_edited_metadata_json_resume_the_records_only(work: Path) -> None:
    _edit_runfile(work, lambda lines: [*lines, "echo new"])
    metadata = work / "runs" / "exp" / "metadata.json"
    os.utime(metadata, ns=(1, 1))  # the fingerprint no longer vouches for it: rebuilt from the records
    _both(work, quick=False, resume=True)
    _edit_runfile(work, lambda lines: [*lines, "echo newer"])
    moved = work / "moved"
    (work / "runs" / "exp").rename(moved)
    # Every entry names its log directory: a moved runs directory's view is rendered again.
    _both(work, "--accounting_dir", str(moved), quick=False)


def test_a_damaged_or_foreign_snapshot_is_not_used(work: Path) -> None:
    from batchrun.store.jobsnapshot import SNAPSHOT_NAME

    runs = work / "runs" / "exp"
    snapshot = runs / SNAPSHOT_NAME
    data = snapshot.read_bytes()
    assert read_resume(RunsDir(runs), work / "exp.runfile") is not None
    snapshot.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped in the last section
    _both(work, quick=True, resume=False)
    snapshot.write_bytes(data.replace(b'"token":"', b'"token":"0', 1))  # another launch's
    _both(work, quick=True, resume=False)
    snapshot.unlink()
    _edit_runfile(work, lambda lines: [*lines, "echo new"])
    _both(work, quick=False, resume=False)
    assert read_resume(RunsDir(runs), work / "exp.runfile") is not None, "the full path left a snapshot again"


def test_a_runfile_with_directives_leaves_no_snapshot_and_relaunches_the_same(work: Path) -> None:
    runs = work / "runs" / "exp"
    # Lines with a directive appended to a runfile that had none: the snapshot holds, and the new
    # lines ask for what the directive says, as a full parse finds.
    _edit_runfile(work, lambda lines: [*lines, "# batchrun: cpus=1", "echo asks"])
    assert read_resume(RunsDir(runs), work / "exp.runfile") is not None
    _both(work, quick=False, resume=True)
    asks = job_id_of("echo asks")
    starts = [line for line in (runs / "jobs.journal").read_text().splitlines() if line.startswith(f"S {asks} ")]
    assert starts and starts[-1].endswith(" cpus=1"), starts
    # Now the runfile has a directive: no snapshot (a parse of the new lines alone could not tell what they ask for).
    assert read_resume(RunsDir(runs), work / "exp.runfile") is None
    _edit_runfile(work, lambda lines: [*lines, "echo after"])
    _both(work, quick=False, resume=False)


def test_a_read_without_the_view_skips_its_sections_and_gives_the_same_jobs_and_records(work: Path) -> None:
    from batchrun.store.jobsnapshot import read_sections

    runs = RunsDir(work / "runs" / "exp")
    _edit_runfile(work, lambda lines: [*lines, "echo new"])  # a changed tail: the kept jobs are told apart
    full = read_resume(runs, work / "exp.runfile")
    light = read_resume(runs, work / "exp.runfile", light=True, usage=False)
    assert full is not None and light is not None
    assert full.view is not None and light.view is None
    assert list(light.runfile.jobs.job_ids()) == list(full.runfile.jobs.job_ids())
    assert light.kept == full.kept == len(full.runfile.jobs) - 1  # all but the new line
    assert {job_id: rec.state for job_id, rec in light.records.items()} == {job_id: rec.state for job_id, rec in full.records.items()}
    assert any(rec.max_rss_kb is not None for rec in full.records.values())
    assert all(rec.max_rss_kb is None and rec.user_cpu_s is None for rec in light.records.values())
    fingerprint = read_fingerprint(runs.path)
    assert fingerprint is not None and fingerprint.snapshot is not None
    sections = read_sections(runs.path, fingerprint.snapshot.token, skip=("view.",))
    assert sections is not None and sections[0] and not any(name.startswith("view.") for name in sections[0])


def test_a_light_read_has_no_usage_until_the_journal_sets_some() -> None:
    from batchrun.store.columns import Floats, Ints, Unread

    ints, floats = Unread(Ints(None), 3), Unread(Floats(), 3)
    assert [ints.get(row) for row in range(3)] == [None, None, None] and floats.get(2) is None
    ints.set(1, None)  # a cleared row: still nothing held
    assert ints.count == 3
    ints.append()
    ints.set(3, 12_000)  # a U line replayed after the snapshot: a real column from then on
    floats.set(0, 0.5)
    assert [ints.get(row) for row in range(4)] == [None, None, None, 12_000]
    assert [floats.get(row) for row in range(3)] == [0.5, None, None]
    assert len(ints.dump()[0][""]) == 4


def test_ids_the_job_table_holds_are_held_once_by_the_records_and_the_view(work: Path) -> None:
    # Every job ran, in runfile order (-j 1): the records' and metadata.json's ids are the job
    # table's, in the same rows, and a relaunch holds one copy of them (48 MB a million jobs for three).
    runs = RunsDir(work / "runs" / "exp")
    resume = read_resume(runs, work / "exp.runfile")
    assert resume is not None and resume.view is not None
    jobs = resume.runfile.jobs.keys
    assert resume.records.keys_index.digests is jobs.digests and resume.view.keys.digests is jobs.digests
    # A relaunch after a line was added reads the same records beside a longer job table: not shared,
    # and the same records and states as before.
    _edit_runfile(work, lambda lines: [*lines, "echo added"])
    grown = read_resume(runs, work / "exp.runfile")
    assert grown is not None and grown.records.keys_index.digests is not grown.runfile.jobs.keys.digests
    assert {job_id: rec.state for job_id, rec in grown.records.items()} == {job_id: rec.state for job_id, rec in resume.records.items()}


@pytest.mark.parametrize("block", [1 << 20, 24], ids=["one-block", "blocks-of-24-bytes"])
def test_a_section_the_same_as_an_earlier_one_is_read_as_that_one_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    from array import array

    from batchrun.store import jobsnapshot

    monkeypatch.setattr(jobsnapshot, "_BLOCK", block)
    ids = array("Q", range(1000, 1100))
    other = array("Q", ids)
    other[99] += 1  # differs in its last byte only
    sections = {"a": ids, "b": array("Q", ids), "c": other, "d": array("Q", ids[:50]), "e": array("B", b"after")}
    assert jobsnapshot.write_sections(tmp_path, "t", sections, {})
    read = jobsnapshot.read_sections(tmp_path, "t", same={"b": "a", "c": "a", "d": "a"})
    assert read is not None
    got = read[0]
    assert got["b"] is got["a"] == ids  # the same bytes: one array
    assert got["c"] is not got["a"] and got["c"] == other  # one byte apart: read as its own
    assert got["d"] == ids[:50] and got["e"].tobytes() == b"after"  # another length; what follows is read whole


def test_a_relaunch_past_the_listed_failures_is_answered_from_the_fingerprint_with_their_count(tmp_path: Path) -> None:
    # The summary lists the first MAX_LISTED failed jobs and counts all: a big sweep with many
    # failures is still answered without a replay, and says how many failed. Its fingerprint is
    # version 2, which an earlier release (version 1 only) passes over for its full path.
    from batchrun.store.fingerprint import MAX_LISTED

    work = tmp_path / "w"
    work.mkdir()
    (work / "exp.runfile").write_text("".join(f"false {i}\n" for i in range(MAX_LISTED + 5)) + "true\n")
    code, out, _ = _launch(work)
    assert code == 1 and f"  ... and {MAX_LISTED} more: batchrun status" in out
    assert (work / "runs" / "exp" / FINGERPRINT_NAME).read_bytes().startswith(b"batchrun-fingerprint 2 ")
    code, out, _ = _both(work, quick=True)
    assert code == 1 and f"  ... and {MAX_LISTED} more: batchrun status" in out and "false 0" in out


@pytest.mark.slow
def test_a_packed_runfile_relaunches_from_the_snapshot_as_the_full_path_does(big: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A long runfile's bytes are held packed (`runfile.packed`): here a short one's, in blocks of 97 bytes,
    # so that commands, the snapshot's block digests and the new bytes' parse all cross block edges.
    from batchrun.runfile import packed

    monkeypatch.setattr(packed, "PACK_FROM", 0)
    monkeypatch.setattr(packed, "BLOCK", 97)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("BRFAULT_PACK", "1")
    assert isinstance(load_runfile(big / "exp.runfile").jobs.blob, packed.PackedBytes)
    _edit_runfile(big, lambda lines: [*lines, "echo new 1", "true 3 " + "y" * 40, "echo new 2"])
    _both(big, quick=False, resume=True)
    _edit_runfile(big, lambda lines: [*lines[:600], "echo inserted", *lines[600:]])
    _both(big, quick=False, resume=True)


def test_the_blocks_a_relaunch_kept_keep_their_digests_and_cuts() -> None:
    blob = b"".join(b"echo %d %s\n" % (i, b"z" * (i % 97)) for i in range(6000))
    ends, digests = _block_digests(blob)
    assert len(ends) > 3
    for matched in range(len(ends) + 1):  # the last block is the short end of the text
        kept = (ends[:matched], digests.tobytes()[: matched * 16])
        grown = blob[: ends[matched - 1] if matched else 0] + b"echo new\n" * 9000
        assert _block_digests(grown, kept) == _block_digests(grown)


@pytest.mark.slow
def test_a_relaunch_from_the_snapshot_leaves_the_snapshot_a_full_launch_would(big: Path) -> None:
    _edit_runfile(big, lambda lines: [*lines, *(f"echo new {i}" for i in range(3))])
    runs = RunsDir(big / "runs" / "exp")
    resume = read_resume(runs, big / "exp.runfile")
    assert resume is not None and resume.journal_prefix is not None and len(resume.blocks[0]) > 1
    _launch(big)
    fingerprint = read_fingerprint(runs.path)
    assert fingerprint is not None and fingerprint.snapshot is not None and fingerprint.summary is not None
    sections = read_sections(runs.path, fingerprint.snapshot.token)
    assert sections is not None
    assert (sections[0]["blocks.ends"], sections[0]["blocks.digests"]) == _block_digests((big / "exp.runfile").read_bytes())
    # The digest it went on from the old journal's own: the journal's, as hashed whole.
    assert journal_digest(runs.path / "jobs.journal") == (fingerprint.journal_size, fingerprint.summary.journal_sha256, fingerprint.summary.journal_lines)


# Runs batchrun with every relaunch's entries after the change written streaming (`resume.HELD_RENDERS`).
_STREAMED = "import sys, batchrun.store.resume as r; r.HELD_RENDERS = 0; from batchrun.__main__ import main; sys.exit(main())"


@pytest.mark.slow
@pytest.mark.parametrize("at", [1000, 1100, 2201])
def test_a_relaunch_with_many_entries_to_render_writes_them_streaming_as_the_full_path_does(big: Path, at: int) -> None:
    """Past `HELD_RENDERS` entries after the change, the relaunch from the snapshot writes metadata.json anew, streaming: the same file."""
    _edit_runfile(big, lambda lines: [*lines[:at], "echo inserted", *lines[at:]])
    saved = big.parent / "saved"
    shutil.copytree(big, saved, symlinks=True)
    assert read_resume(RunsDir(big / "runs" / "exp"), big / "exp.runfile") is not None
    done = subprocess.run([sys.executable, "-c", _STREAMED, "launch", "exp.runfile", "-j", "1"], cwd=big, capture_output=True, text=True, timeout=120, check=False)
    streamed = done.returncode, re.sub(r"\d+\.\d\ds", "T", done.stdout), done.stderr
    streamed_states, streamed_view = _states(big), _view(big)
    lines = (big / "runs" / "exp" / "metadata.json").read_bytes().count(b"\n")
    streamed_lines = _lines_but(big, job_id_of("echo inserted"))
    # The full path, from the same directory at the same place.
    shutil.rmtree(big)
    shutil.copytree(saved, big, symlinks=True)
    (big / "runs" / "exp" / FINGERPRINT_NAME).unlink()
    assert streamed == _launch(big)
    assert streamed_states == _states(big)
    assert streamed_view == _view(big)
    assert lines == (big / "runs" / "exp" / "metadata.json").read_bytes().count(b"\n")
    # Byte for byte, but for the job that ran in each (its times): the old lines kept, their line numbers set, are the renderings.
    assert streamed_lines == _lines_but(big, job_id_of("echo inserted"))


def _lines_but(work: Path, job_id: str) -> list[bytes]:
    """metadata.json's lines in order, without the one of `job_id`."""
    return [line for line in (work / "runs" / "exp" / "metadata.json").read_bytes().splitlines() if not line.startswith(f'  "{job_id}"'.encode())]
