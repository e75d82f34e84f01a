"""A slot's next job waiting in its helper behind the job there (issue 28's spawn path).

The helper appends a job's start line itself, right before the start, so a
job that waits is nothing in any record; it is given back (`W`) once it
waited `QUEUE_HOLD` or once the launch cancels it; a helper whose launch
died starts nothing (its check runs under the journal folder's flock, which
a relaunch takes before it reads the journal). Unit tests drive the
scheduler, the journal and a `HelperPool` directly; the kill -9 windows go
through the real CLI, each fault placed at its instant.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import batchrun_cmd, exit_text, fault_env, kill_all, live_pids_with_env, read_metadata, wait_for

from batchrun.executors import appendlock
from batchrun.executors.jobfiles import job_lock_held
from batchrun.executors.local import helpers
from batchrun.executors.local._slot_helper import DIE_AFTER_LINE_HOOK, KILL_BEFORE_CHECK_HOOK, KILL_IN_LOCK_HOOK
from batchrun.executors.local.helpers import SlotHelper, Ticket
from batchrun.executors.local.pool import HelperPool
from batchrun.launch.scheduler import Grant, Scheduler
from batchrun.resources import parse_request
from batchrun.runfile.file import job_id_of
from batchrun.store.journal import JOURNAL_NAME, Journal, excluding_writers
from batchrun.store.records import FIELDS

MakeRunfile = Callable[..., Path]


@pytest.fixture()
def marker() -> Iterator[str]:
    name = f"BRQUEUE{os.getpid()}"
    yield name
    kill_all(live_pids_with_env(name))


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    (path / "logs").mkdir(parents=True)
    (path / JOURNAL_NAME).touch()
    return path


@pytest.fixture()
def holding_pool(runs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HelperPool]:
    """Helpers that append the start lines to `runs`' journal and hold a queued job as long as a test needs."""
    monkeypatch.setattr(helpers, "QUEUE_HOLD", 60.0)
    pool = HelperPool(journal=str(runs / JOURNAL_NAME))
    yield pool
    pool.close()


def _env(marker: str, **extra: str) -> dict[str, str]:
    return dict(os.environ, BATCHRUN_ATTEMPT="1", **{marker: "1"}, **extra)


def _line(job_id: str) -> tuple[str, str]:
    return Journal.start_line(job_id, 1, 0, "host")


def _start_in(pool: HelperPool, runs: Path, name: str, command: str, env: dict[str, str], give_up: Callable[[], bool] | None = None) -> tuple[int, str | None] | None:
    """Job `name` (its id the letter 16 times) started in slot 0 with its start line, behind the job there if one runs."""
    job_id = name * 16
    return pool.start_in(0, job_id, command, str(runs / "logs" / name), env, _line(job_id), give_up)


def _send(helper: SlotHelper, runs: Path, name: str, command: str, env: dict[str, str]) -> Ticket:
    """`_start_in`'s request, sent to one helper."""
    return helper.send(name * 16, command, str(runs / "logs" / name), env, _line(name * 16))


def _gated(gate: Path, then: str = "true") -> str:
    return f"n=0; while [ ! -e {gate} ] && [ $n -lt 1200 ]; do sleep 0.02; n=$((n+1)); done; {then}"


def _one_behind_a_gated_job(pool: HelperPool, runs: Path, gate: Path, marker: str) -> tuple[tuple[int, str | None], threading.Thread, list[tuple[int, str | None] | None]]:
    """Job `a` started in slot 0, running until `gate` exists; a thread starting job `b` in slot 0 behind it, and what that start gives."""
    first = _start_in(pool, runs, "a", _gated(gate), _env(marker))
    assert first is not None
    got: list[tuple[int, str | None] | None] = []
    waiter = threading.Thread(target=lambda: got.append(_start_in(pool, runs, "b", "echo b", _env(marker), lambda: False)))
    waiter.start()
    return first, waiter, got


def _journal_lines(runs: Path) -> list[str]:
    return (runs / JOURNAL_NAME).read_text().splitlines()


def _stop_after(seconds: float = 0.3) -> Callable[[], bool]:
    """A `stop` (or `give_up`) that says so once `seconds` have passed: a take or start that must not succeed gives up then."""
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop.is_set


# -- the helper: a job waits behind the one before it, and is given back ----------------


def test_a_queued_job_starts_as_the_one_before_it_ends_and_its_helper_writes_its_start_line(holding_pool: HelperPool, runs: Path, marker: str) -> None:
    pool = holding_pool
    gate = runs / "gate"
    first, waiter, got = _one_behind_a_gated_job(pool, runs, gate, marker)
    waiter.join(0.5)
    assert waiter.is_alive(), "the second job started while the first ran"
    assert not (runs / "logs" / "b").exists() and len(_journal_lines(runs)) == 1, "a waiting job left a trace"
    gate.touch()
    waiter.join(30)
    (second,) = got
    assert second is not None
    assert pool.wait(first[0]) is not None and pool.wait(second[0]) is not None
    assert _journal_lines(runs) == [f"S {'a' * 16} 1 {first[1]} 0 host", f"S {'b' * 16} 1 {second[1]} 0 host"]
    assert float(second[1] or 0) >= float(first[1] or 0)
    assert exit_text(runs / "logs" / "b") == "0 1\n"


def test_a_jobs_end_read_before_its_start_waits_for_it_and_the_other_threads_read_their_own_answers(runs: Path, marker: str) -> None:
    # The end answers come on a pipe of their own: a thread waiting for a job's end may read it
    # before the job's start answer is read from the other pipe; it goes to the job once that is.
    helper = SlotHelper(journal=str(runs / JOURNAL_NAME))
    try:
        ticket = _send(helper, runs, "a", "exit 3", _env(marker))
        wait_for(lambda: exit_text(runs / "logs" / "a") == "3 1\n", what="the job to end and be recorded")
        wait_for(lambda: not helper._await(ticket, True, 0.05) and bool(helper._early), what="the end answer to be read, its start answer not")
        assert ticket.ended is None and ticket.answer is None and helper.busy
        pid = helper.started(ticket)
        assert pid is not None and ticket.ended is not None, "the end read first did not go to its job with its start"
        assert helper.wait(ticket, 0) is not None and helper.wait(ticket, 0)[0] == 3  # type: ignore[index]
        assert not helper.busy
        # And the next job's answers come as ever.
        again = _send(helper, runs, "b", "exit 4", _env(marker))
        assert helper.started(again) is not None
        ended = helper.wait(again, 30)
        assert ended is not None and ended[0] == 4
    finally:
        helper.close()


def test_a_job_queued_behind_a_long_one_is_given_back_unstarted_and_its_environment_counts_as_sent(runs: Path, marker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helpers, "QUEUE_HOLD", 0.05)
    pool = HelperPool(journal=str(runs / JOURNAL_NAME))
    gate = runs / "gate"
    try:
        first = _start_in(pool, runs, "a", _gated(gate), _env(marker, X="a"))
        assert first is not None
        began = time.monotonic()
        assert _start_in(pool, runs, "b", "echo b", _env(marker, X="b", Y="1"), lambda: False) is None
        assert time.monotonic() - began < 20 and job_lock_held(runs / "logs" / "a"), "it was not given back while the first job ran"
        assert not (runs / "logs" / "b").exists() and len(_journal_lines(runs)) == 1
        gate.touch()
        assert pool.wait(first[0]) is not None
        # Sent as a change from the given-back job's environment: nothing changes, so the helper must hold X=b Y=1.
        third = _start_in(pool, runs, "c", 'echo "$X $Y"', _env(marker, X="b", Y="1"), lambda: False)
        assert third is not None and pool.wait(third[0]) is not None
        assert (runs / "logs" / "c" / "out.log").read_text() == "b 1\n"
    finally:
        pool.close()


def test_a_slot_whose_helper_was_sigkilled_starts_no_job_until_its_orphaned_job_ends(holding_pool: HelperPool, runs: Path, marker: str) -> None:
    # The dead helper's job runs on (reparented, or followed by its lock): a job sent to the slot meanwhile
    # would start at once in a new helper, two jobs in one slot. It is given back until that job ends.
    pool = holding_pool
    gate = runs / "gate"
    first, queued, got = _one_behind_a_gated_job(pool, runs, gate, marker)
    helper = pool._slots[0]
    wait_for(lambda: bool(helper._starting), what="the second job to wait in the helper")
    os.kill(helper.proc.pid, signal.SIGKILL)
    queued.join(30)
    assert got == [None], "the job waiting in the killed helper was not given back"
    ended: list[object] = []
    waiter = threading.Thread(target=lambda: ended.append(pool.wait(first[0], 60)))
    waiter.start()
    assert _start_in(pool, runs, "c", "echo c", _env(marker), lambda: False) is None, "a job started beside the orphaned one"
    assert not (runs / "logs" / "c").exists() and not (runs / "logs" / "b").exists()
    gate.touch()
    waiter.join(30)
    assert ended and ended[0] is not None
    third = _start_in(pool, runs, "c", "echo c", _env(marker), lambda: False)
    assert third is not None and pool.wait(third[0]) is not None
    assert exit_text(runs / "logs" / "c") == "0 1\n"


def test_a_cancel_withdraws_a_queued_job_while_the_one_before_it_runs(holding_pool: HelperPool, runs: Path, marker: str) -> None:
    pool = holding_pool
    gate = runs / "gate"
    first = _start_in(pool, runs, "a", _gated(gate), _env(marker))
    assert first is not None
    assert _start_in(pool, runs, "b", "echo b", _env(marker), _stop_after()) is None
    assert job_lock_held(runs / "logs" / "a"), "the cancel waited for the running job's end"
    gate.touch()
    assert pool.wait(first[0]) is not None
    assert not (runs / "logs" / "b").exists() and len(_journal_lines(runs)) == 1


def test_a_cancel_that_came_after_its_job_started_is_passed_over(runs: Path, marker: str) -> None:
    helper = SlotHelper(journal=str(runs / JOURNAL_NAME))
    try:
        ticket = _send(helper, runs, "a", "sleep 0.2", _env(marker))
        assert helper.started(ticket) is not None
        helper._write(b"-\n")  # the launch's cancel, too late: the job runs
        assert helper.wait(ticket) is not None
        ticket = _send(helper, runs, "b", "echo b", _env(marker))
        assert helper.started(ticket) is not None, "a stale cancel withdrew the next job"
        assert helper.wait(ticket) is not None
        assert (runs / "logs" / "b" / "out.log").read_text() == "b\n"
    finally:
        helper.close()


def test_a_helper_whose_pipe_is_closed_starts_no_queued_job(runs: Path, marker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As when its launch dies with a job waiting: at EOF the waiting request is dropped, the running job recorded."""
    monkeypatch.setattr(helpers, "QUEUE_HOLD", 60.0)
    helper = SlotHelper(journal=str(runs / JOURNAL_NAME))
    gate = runs / "gate"
    first = _send(helper, runs, "a", _gated(gate, "exit 4"), _env(marker))
    assert helper.started(first) is not None
    _send(helper, runs, "b", "echo b", _env(marker))
    time.sleep(0.2)
    for stream in (helper.proc.stdin, helper.proc.stdout):
        assert stream is not None
        stream.close()
    gate.touch()
    assert helper.proc.wait(timeout=60) == 0
    assert exit_text(runs / "logs" / "a") == "4 1\n"
    assert not (runs / "logs" / "b").exists() and len(_journal_lines(runs)) == 1


# -- the scheduler: one queued job a slot, behind a job that started just now -----------


def test_a_job_queues_behind_the_youngest_busy_slot_one_a_slot_and_either_holder_gives_it_back_first() -> None:
    scheduler = Scheduler(2, None, queue_young=60.0)
    a = scheduler.take("a", None)
    b = scheduler.take("b", None)
    assert a is not None and b is not None and not a.queued and not b.queued
    c = scheduler.take("c", None, queue=True)
    assert c is not None and c.queued and c.slot == b.slot, "not behind the slot whose job started last"
    d = scheduler.take("d", None, queue=True)
    assert d is not None and d.queued and d.slot == a.slot
    assert scheduler.take("e", None, _stop_after(), queue=True) is None, "two jobs queued behind one slot"
    # c was given back unstarted: b keeps its slot, and c may queue again behind it.
    scheduler.give(c, withdrawn=True)
    again = scheduler.take("c", None, queue=True)
    assert again is not None and again.queued and again.slot == b.slot
    # a ends first: d holds the slot; when d ends, the slot is free.
    scheduler.give(a)
    scheduler.give(d)
    freed = scheduler.take("f", None)
    assert freed is not None and freed.slot == a.slot and not freed.queued
    # The queued job ends before the one it waited behind is given back (its thread was slower): the other order.
    scheduler.give(again)
    scheduler.give(b)
    assert (g := scheduler.take("g", None)) is not None and g.slot == b.slot


def test_a_queued_job_given_back_leaves_its_slot_as_old_as_the_job_running_there() -> None:
    """Given back, a queued job must not make the long job it waited behind look
    young: the next job in line would queue behind it anew, be given back, and
    so on while the long job runs (on a launch of long jobs, about 70 give-backs
    a second for two slots)."""
    scheduler = Scheduler(1, None, queue_young=0.2)
    assert scheduler.take("long", None) is not None
    queued = scheduler.take("b", None, queue=True)
    assert queued is not None and queued.queued
    time.sleep(0.3)  # the long job is no longer young
    scheduler.give(queued, withdrawn=True)  # b waited its hold out, unstarted
    assert scheduler.take("c", None, _stop_after(), queue=True) is None, "a job queued behind the long one again"


def test_a_queued_job_that_ran_leaves_its_slot_young_for_the_one_queued_behind_it() -> None:
    """Jobs run back to back in one slot, each queued behind the last: the one
    that took over a moment ago is young, so the next may queue behind it (a
    job that ran as a queued one, ending, once left the slot as old as the
    first job: 300 of 5,000 trivial jobs went through the launch instead)."""
    scheduler = Scheduler(1, None, queue_young=0.2)
    first = scheduler.take("a", None)
    second = scheduler.take("b", None, queue=True)
    assert first is not None and second is not None and second.queued
    scheduler.give(first)  # a ended: b started
    third = scheduler.take("c", None, queue=True)
    assert third is not None and third.queued
    time.sleep(0.3)  # b has run long
    scheduler.give(second)  # b ended: c started just now
    fourth = scheduler.take("d", None, _stop_after(), queue=True)
    assert fourth is not None and fourth.queued, "no job may queue behind the one that just took over"


def test_a_job_given_back_by_the_slot_it_queued_behind_keeps_its_turn_ahead_of_later_jobs() -> None:
    """A job queues only from the head of the line; given back unstarted, it goes
    back to the head: a job that came while it waited must not start first (a
    runfile's jobs would start out of order, and a job could be passed over
    again and again)."""
    scheduler = Scheduler(1, None, queue_young=0.2)
    first = scheduler.take("a", None)
    queued = scheduler.take("b", None, queue=True)
    assert first is not None and queued is not None and queued.queued
    got: dict[str, Grant | None] = {}
    later = threading.Thread(target=lambda: got.update(c=scheduler.take("c", None)), daemon=True)
    later.start()
    wait_for(lambda: len(scheduler._line) == 1, timeout=10, what="c to wait in line")
    time.sleep(0.3)  # a is no longer young: b, given back, waits in line
    scheduler.give(queued, withdrawn=True)
    again = threading.Thread(target=lambda: got.update(b=scheduler.take("b", None, queue=True, again=True)), daemon=True)
    again.start()
    wait_for(lambda: len(scheduler._line) == 2, timeout=10, what="b to wait in line again")
    scheduler.give(first)
    again.join(10)
    assert got.get("b") is not None and "c" not in got, "a later job took the slot before the job given back"
    scheduler.give(got["b"])  # type: ignore[arg-type]
    later.join(10)
    assert got.get("c") is not None


def test_a_job_queues_only_behind_a_job_that_started_just_now_and_only_when_it_asks_nothing_but_a_slot() -> None:
    scheduler = Scheduler(1, None, queue_young=0.05)
    assert scheduler.take("a", None) is not None
    time.sleep(0.1)
    assert scheduler.take("b", None, _stop_after(), queue=True) is None, "queued behind a job that has run long"
    plain = Scheduler(1, None, queue_young=60.0)
    assert plain.take("a", None) is not None
    assert plain.take("b", None, _stop_after(), queue=False) is None
    from batchrun.launch.capacity import Capacity

    sized = Scheduler(1, Capacity(cpus=4, mem=1 << 30), queue_young=60.0)
    assert sized.take("a", None) is not None
    assert sized.take("b", parse_request("cpus=1"), _stop_after(), queue=True) is None, "a job asking for CPUs was queued"


# -- the journal: lines another process wrote, and the guard -----------------------------


def test_a_start_line_another_process_wrote_is_counted_as_if_written_here(runs: Path) -> None:
    journal = Journal(runs)
    journal.load()
    journal.open()
    try:
        before, after = journal.start_line("a" * 16, 1, 3, "host", "cpus=2", "v1")
        fd = os.open(journal.path, os.O_WRONLY | os.O_APPEND)
        appendlock.append_locked(fd, f"{before}1796666563.221244{after}".encode())
        os.close(fd)
        rec = journal.note_start((before, after), "a" * 16, 1, "1796666563.221244", 3, "host", "cpus=2", "v1")
        assert journal.size == journal.path.stat().st_size
        running = Journal(runs)
        running.load()
        assert {f.name: getattr(running.records["a" * 16], f.name) for f in FIELDS} == {f.name: getattr(rec, f.name) for f in FIELDS}
        assert (rec.state, rec.slot, rec.holds, rec.code, rec.start) == ("running", 3, "cpus=2", "v1", 1796666563.221244)
        journal.record_end("a" * 16, 1, 0, rec.start or 0, rec.start or 0)
    finally:
        journal.close()
    again = Journal(runs)
    again.load()
    mine, replayed = journal.records["a" * 16], again.records["a" * 16]
    assert {f.name: getattr(replayed, f.name) for f in FIELDS} == {f.name: getattr(mine, f.name) for f in FIELDS}


def test_reading_the_journal_excludes_helpers_that_check_their_launch_and_write_a_start_line(runs: Path) -> None:
    journal = Journal(runs)
    held = threading.Event()
    release = threading.Event()

    def read() -> None:
        with excluding_writers(journal.path):
            held.set()
            release.wait(10)

    reader = threading.Thread(target=read)
    reader.start()
    assert held.wait(10)
    fd = appendlock.guard(runs / JOURNAL_NAME)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        release.set()
        reader.join(10)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(fd)


# -- through the CLI: each kill -9 window of a start the helper records --------------------


def _launch(workdir: Path, *args: str, **faults: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batchrun_cmd("launch", "exp.runfile", *args), cwd=workdir, capture_output=True, text=True, timeout=120, env=fault_env(**faults))


def _starts(workdir: Path, line: str) -> list[str]:
    journal = workdir / "runs" / "exp" / JOURNAL_NAME
    return [entry for entry in journal.read_text().splitlines() if entry.startswith(f"S {job_id_of(line)} ")] if journal.exists() else []


def test_a_launch_killed_the_instant_before_its_helper_starts_a_job_leaves_it_unstarted(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """The helper finds its launch gone under the lock (`KILL_BEFORE_CHECK_HOOK`): no start line, no process; the relaunch runs the job once."""
    side = workdir / "side"
    line = f"export {marker}=1; echo ran >> {side}"
    make_runfile([line])
    first = _launch(workdir, "-q", **{KILL_BEFORE_CHECK_HOOK: "1"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    wait_for(lambda: not live_pids_with_env(marker) and not _helpers_alive(workdir), what="the helper to drop the job and exit")
    assert not side.exists() and _starts(workdir, line) == []
    again = _launch(workdir)
    assert again.returncode == 0, again.stderr
    assert side.read_text() == "ran\n"
    assert len(_starts(workdir, line)) <= 1  # compacted away or the one start


def _helpers_alive(workdir: Path) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"_slot_helper.py" in Path(f"/proc/{pid}/cmdline").read_bytes() and Path(f"/proc/{pid}/cwd").resolve() == workdir.resolve():
                return True
        except OSError:
            continue
    return False


def test_a_launch_killed_after_its_helpers_check_leaves_a_start_line_and_the_relaunch_adopts_the_job(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """The launch dies while the helper holds the lock past its check (`KILL_IN_LOCK_HOOK`): the line and the job's lock come first, so the relaunch adopts it."""
    side, gate = workdir / "side", workdir / "gate"
    line = f"export {marker}=1; {_gated(gate)}; echo ran >> {side}"
    make_runfile([line])
    first = _launch(workdir, "-q", **{KILL_IN_LOCK_HOOK: "1"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(line)
    wait_for(lambda: job_lock_held(log_dir), what="the job to start")
    assert len(_starts(workdir, line)) == 1
    threading.Timer(1.0, gate.touch).start()
    again = _launch(workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "adopted" in again.stdout, again.stdout
    assert side.read_text() == "ran\n", "the job ran twice"
    (entry,) = read_metadata(workdir / "runs" / "exp").values()
    assert (entry["state"], entry["attempts"]) == ("succeeded", 1)


def test_a_helper_that_dies_between_the_start_line_and_the_start_costs_no_job_a_second_run(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    """`DIE_AFTER_LINE_HOOK`: the line is written, no process exists; the launch finds the lock free and starts the job in a new helper, once."""
    side = workdir / "side"
    line = f"export {marker}=1; echo ran >> {side}"
    make_runfile([line])
    done = _launch(workdir, **{DIE_AFTER_LINE_HOOK: str(workdir / "died")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (workdir / "died").exists(), "the fault was not placed"
    assert side.read_text() == "ran\n"
    (entry,) = read_metadata(workdir / "runs" / "exp").values()
    assert (entry["state"], entry["attempts"]) == ("succeeded", 1)
    again = _launch(workdir)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stdout + again.stderr
    assert side.read_text() == "ran\n"


def _two_busy_slots_and_one_waiting(workdir: Path, make_runfile: MakeRunfile, marker: str, first: str) -> list[str]:
    """Two jobs that hold both slots (until `gate`, `first` the shell after it), and a third that waits behind one."""
    gate = workdir / "gate"
    lines = [f"export {marker}=1; touch {workdir}/ready{i}; {_gated(gate, first)}; echo a{i} >> {workdir}/side" for i in (1, 2)]
    lines.append(f"echo b >> {workdir}/side")
    make_runfile(lines)
    return lines


def _start_waiting(workdir: Path, *args: str, **faults: str) -> subprocess.Popen[str]:
    launch = subprocess.Popen(batchrun_cmd("launch", "exp.runfile", "-j", "2", "-q", *args), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=fault_env(BRFAULT_QUEUE_HOLD="60", **faults))
    wait_for(lambda: (workdir / "ready1").exists() and (workdir / "ready2").exists(), what="both slots' jobs to start")
    time.sleep(0.5)  # the third job's thread (a spare worker per slot) queues it at once
    return launch


def test_a_job_waiting_in_a_helper_starts_as_the_one_before_it_ends_before_the_launch_hears_of_that_end(
    make_runfile: MakeRunfile, workdir: Path, marker: str
) -> None:
    lines = _two_busy_slots_and_one_waiting(workdir, make_runfile, marker, "true")
    held = workdir / "held"
    launch = _start_waiting(workdir, BRFAULT_SLOW_END=str(held), BRFAULT_SLOW_ENDS="1")
    try:
        (workdir / "gate").touch()
        # The launch holds back its record of every end, so no slot is given back; the helper starts the waiting job regardless.
        wait_for(lambda: "b" in _side(workdir), what="the waiting job to start with no round trip through the launch")
        states = _states(workdir)
        assert (states.get(job_id_of(lines[0])), states.get(job_id_of(lines[1]))) == ("running", "running"), states
        held.touch()
        _, err = launch.communicate(timeout=60)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.communicate()
    assert launch.returncode == 0, err
    assert sorted((workdir / "side").read_text().split()) == ["a1", "a2", "b"]
    assert {entry["attempts"] for entry in read_metadata(workdir / "runs" / "exp").values()} == {1}


def _side(workdir: Path) -> list[str]:
    side = workdir / "side"
    return side.read_text().split() if side.exists() else []


def _states(workdir: Path) -> dict[str, str]:
    journal = Journal(workdir / "runs" / "exp")
    journal.load()
    return {job_id: str(rec.state) for job_id, rec in journal.records.items()}


def test_a_launch_killed_with_a_job_waiting_in_a_helper_leaves_it_unstarted_and_the_relaunch_runs_it_once(
    make_runfile: MakeRunfile, workdir: Path, marker: str
) -> None:
    lines = _two_busy_slots_and_one_waiting(workdir, make_runfile, marker, "true")
    launch = _start_waiting(workdir)
    launch.kill()
    launch.communicate(timeout=30)
    (workdir / "gate").touch()
    wait_for(lambda: not _helpers_alive(workdir), what="the helpers to record their jobs and exit")
    assert sorted((workdir / "side").read_text().split()) == ["a1", "a2"], "the waiting job started after its launch died"
    assert _starts(workdir, lines[2]) == []
    again = _launch(workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted((workdir / "side").read_text().split()) == ["a1", "a2", "b"]
    assert {entry["attempts"] for entry in read_metadata(workdir / "runs" / "exp").values()} == {1}


def test_ctrl_c_withdraws_a_job_waiting_in_a_helper(make_runfile: MakeRunfile, workdir: Path, marker: str) -> None:
    # Stopped in their wait the first time: a stop ends the slots' jobs, and their helpers then find the cancel.
    lines = _two_busy_slots_and_one_waiting(workdir, make_runfile, marker, "true")
    launch = _start_waiting(workdir, "--grace", "1")
    launch.send_signal(signal.SIGINT)
    _, err = launch.communicate(timeout=60)
    assert launch.returncode == 130, err
    assert "b" not in _side(workdir), "the waiting job started after the stop"
    assert _starts(workdir, lines[2]) == [] and not (workdir / "runs" / "exp" / "logs" / job_id_of(lines[2])).exists()
    (workdir / "gate").touch()
    again = _launch(workdir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "b" in (workdir / "side").read_text().split()


def test_every_job_runs_with_its_own_variables_while_jobs_queue_and_are_given_back(make_runfile: MakeRunfile, workdir: Path) -> None:
    """Jobs of 10-90 ms at -j 3 queue behind young slots and are given back about
    every other start, and a job given back is sent again at once, often to the
    helper it had been sent to while another job is sent there: each job must see
    its own BATCHRUN_JOB_ID and metrics path (a race in the helper's environment
    changes ran one or two jobs of 200 with the previous job's, in 4 runs of 5)."""
    lines = [f'sleep 0.0{i % 9 + 1}; echo "$BATCHRUN_JOB_ID" > "$BATCHRUN_METRICS"; echo "$BATCHRUN_JOB_ID" > own.{i} # {i}' for i in range(200)]
    make_runfile(lines)
    done = _launch(workdir, "-j", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    logs = workdir / "runs" / "exp" / "logs"
    seen = {job_id_of(line): ((logs / job_id_of(line) / "metrics.jsonl").read_text().strip(), (workdir / f"own.{i}").read_text().strip()) for i, line in enumerate(lines)}
    wrong = {job_id: ids for job_id, ids in seen.items() if ids != (job_id, job_id)}
    assert wrong == {}, "jobs ran with another job's variables"
