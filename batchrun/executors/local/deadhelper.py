"""When a slot helper dies (SIGKILL): whether the job it was starting runs, and the wait for a job it left running.

A helper's job runs in a session of its own and outlives it. The launch is a
child subreaper (`supervisor.become_subreaper`), so the job is reparented to
it: the job's thread reaps it, learning its real status, and writes its exit
record as the helper would have. Where it cannot (no subreaper, or the helper
died between reaping the job and recording it) the thread waits for
out.log's lock and takes the exit record if there is one (`helpers`).

A known limit: a helper that died after starting its job and before saying
so leaves the launch to find the job by its lock (`started_unanswered`); a
job that already ended by then (a short job, a loaded launch slow to look)
holds no lock and counts as never started, so it runs again. Its shell is
then a zombie child of the launch, whose status could be taken instead, but
nothing ties that zombie to its job yet (its environment is gone).
"""

from __future__ import annotations

import os
import subprocess
import time

from batchrun.executors.jobfiles import job_lock_held, wait_unwatched
from batchrun.executors.local.tickets import HelperGone, Ticket
from batchrun.executors.processes import job_processes, reap_strays
from batchrun.executors.supervisor import record_end

__all__ = ["HELPER_EXIT", "ORPHAN_POLL", "started_unanswered", "wait_orphan"]

# How often the job of a dead helper is looked at.
ORPHAN_POLL = 0.05
# How long a helper whose pipe closed may take to be gone (it was killed: milliseconds).
HELPER_EXIT = 5.0


def started_unanswered(proc: subprocess.Popen[bytes], ticket: Ticket) -> int | None:
    """After the helper died mid-start: the pid of the job's shell if the job runs, None if it never started.

    Its out.log lock is held from before the fork until the last process
    of the job ends, so a free lock (once the helper is gone) means no
    process of this start exists; a held one, that the job's shell (the
    leader of its own group, its environment naming the job) is there,
    or about to exec.

    Raises:
        HelperGone: the lock is held but the shell cannot be found.
    """
    _reap(proc)
    deadline = time.monotonic() + HELPER_EXIT
    while job_lock_held(ticket.log_dir):
        for pid, group in job_processes(ticket.job_id, ticket.log_dir):
            if pid == group:
                return pid
        if time.monotonic() >= deadline:
            raise HelperGone()
        time.sleep(ORPHAN_POLL)
    return None


def wait_orphan(proc: subprocess.Popen[bytes], ticket: Ticket, launch: str | None, timeout: float | None) -> int | None:
    """The helper died while its job ran: reap the job, reparented to this subreaper, and record it; None on timeout.

    A job that is no child of ours (see the module docstring) is waited
    for by its lock, and its record read.
    """
    pid, log_dir, attempt = ticket.pid, ticket.log_dir, ticket.attempt
    deadline = None if timeout is None else time.monotonic() + timeout
    _reap(proc)
    while True:
        try:
            reaped, wait_status, _ = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return wait_unwatched(log_dir, attempt or None, left, ORPHAN_POLL)
        if reaped == pid:
            returncode = os.waitstatus_to_exitcode(wait_status)
            record_end(os.fsencode(log_dir), returncode, str(attempt or ""), launch=launch)
            reap_strays(pid)
            return returncode
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(ORPHAN_POLL)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait (up to `HELPER_EXIT`) for the dead helper to be gone: its pipes close before the kernel
    reparents its children and releases what it held, so only then is its job ours to reap, or its
    lock the job's alone."""
    try:
        proc.wait(HELPER_EXIT)
    except subprocess.TimeoutExpired:
        pass
