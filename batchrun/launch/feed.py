"""A launch's job source (`JobQueue`), and the one of a following launch (`JobFeed`).

The windowed task loader of `_doit.runner` takes its jobs from a `JobQueue`:
each `next_jobs` call answers with the next jobs to run, with [] for
"nothing yet, ask again in `QUEUE_POLL` seconds" (the run goes on, its
workers wait), or with None for "no more" (the run ends once its running
jobs end). A fixed list of jobs (`FixedJobs`) never says "nothing yet"; a
following launch's `JobFeed` does, and an adaptive sweep may hand in a
source of its own that proposes jobs as results come in.

`launch --follow` hands its windowed task loader a `JobFeed` instead of a
fixed list. The loader asks `next_jobs` for its next window: the plan's
pending jobs first, then whatever the follower reports, blocking nowhere
(an empty list means "nothing yet, ask again shortly"; None means the launch
is stopping and nothing is left). Just before a queued job starts, the
launch asks `should_start`: a job whose line left the file while it waited
in a window is dropped there, without a record, so it never runs.

A job reported again (its line removed and put back) is queued once: the
feed remembers what it has handed out and not yet seen start or drop.

This module runs nothing and never prints.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Protocol

from batchrun.runfile.file import Job
from batchrun.runfile.follow import POLL_INTERVAL, FollowChange, RunfileFollower
from batchrun.runfile.follow_gridspec import GridspecFollower

__all__ = ["QUEUE_POLL", "FixedJobs", "JobFeed", "JobQueue"]

# How long the loader waits after "nothing yet" before it asks again.
QUEUE_POLL = POLL_INTERVAL


class JobQueue(Protocol):
    """Where a launch's doit run takes its jobs from; called from several threads."""

    def next_jobs(self, limit: int, is_done: Callable[[str], bool]) -> list[Job] | None:
        """Up to `limit` jobs to queue now, none of which `is_done` (done for the mode, or running now).

        [] means nothing yet (asked again after `QUEUE_POLL` seconds);
        None means no more: the run ends once its running jobs have.
        """
        ...


class FixedJobs:
    """The jobs of a launch that does not follow: its plan's, in order, each once."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = iter(jobs)
        self._lock = threading.Lock()

    def next_jobs(self, limit: int, is_done: Callable[[str], bool]) -> list[Job] | None:
        with self._lock:
            jobs = []
            for job in self._jobs:
                if not is_done(job.job_id):
                    jobs.append(job)
                    if len(jobs) >= limit:
                        break
            return jobs or None


class JobFeed:
    """A launch's job source under --follow; thread-safe.

    The plan's pending jobs are taken from their iterator as windows ask
    (a million-line plan is never a list of `Job`s); the jobs the follower
    reports after are queued behind them.
    """

    def __init__(
        self,
        pending: Iterable[Job],
        follower: RunfileFollower | GridspecFollower,
        stop: threading.Event,
        on_change: Callable[[FollowChange], None] | None = None,
        count: int | None = None,
    ) -> None:
        self.follower = follower
        self.stop = stop
        self.on_change = on_change
        # The plan's jobs not taken yet, and how many (for the display).
        self._plan: Iterator[Job] | None = iter(pending)
        self._plan_left = count if count is not None else (len(pending) if isinstance(pending, Sized) else 0)
        # Jobs whose line left the file: the plan's copy of them is skipped (one put back is queued again, below).
        self._dropped: set[str] = set()
        self._backlog: deque[Job] = deque()  # jobs that entered the file, behind the plan's
        self._queued: set[str] = set()  # handed out, not yet started or dropped
        self._lock = threading.Lock()

    def next_jobs(self, limit: int, is_done: Callable[[str], bool]) -> list[Job] | None:
        """Up to `limit` jobs to queue now, skipping those `is_done` says need not run.

        `is_done` must also be true of a job running now: a line removed and
        put back while its job runs must not start it a second time.

        Returns [] when there are none yet, None once `stop` is set (the
        launch starts no new job; what it already queued is not started).
        """
        if self.stop.is_set():
            return None
        change = self.follower.take()
        with self._lock:
            if change is not None:
                gone = set(change.removed)
                if gone:
                    self._dropped |= gone
                    self._backlog = deque(job for job in self._backlog if job.job_id not in gone)
                self._backlog.extend(job for job in change.added if job.job_id not in self._queued)
            jobs: list[Job] = []
            while len(jobs) < limit:
                job = self._next_waiting()
                if job is None:
                    break
                if job.job_id in self._queued or is_done(job.job_id):
                    continue
                self._queued.add(job.job_id)
                jobs.append(job)
        if change is not None and self.on_change is not None:
            self.on_change(change)
        return jobs

    def _next_waiting(self) -> Job | None:
        """The next job of the plan (unless dropped), then of the backlog; None when both are empty."""
        while self._plan is not None:
            job = next(self._plan, None)
            if job is None:
                self._plan, self._plan_left = None, 0
                break
            self._plan_left -= 1
            if job.job_id not in self._dropped:
                return job
        return self._backlog.popleft() if self._backlog else None

    def should_start(self, job_id: str) -> bool:
        """Whether a queued job may start now: the launch goes on and its line is still in the file."""
        with self._lock:
            self._queued.discard(job_id)
        return not self.stop.is_set() and self.follower.wanted(job_id)

    def queued(self) -> int:
        """How many jobs wait in windows, in the plan or in the backlog (for the display)."""
        with self._lock:
            return len(self._queued) + max(0, self._plan_left) + len(self._backlog)
