"""A bayes sweep as a job source: each free slot gets the optimizer's next point, appended to the runfile first.

`batchrun launch spec.yml` on a `method: bayes` spec runs no sweep task: the
runfile starts empty (or holds the points of earlier launches) and
`BayesFeed` is the launch's source of further jobs (`_doit.runner.MoreJobs`).
Whenever a slot is free it rebuilds the search from the runfile, the journal
and the finished runs' metrics files (`bayes.sweep_state`), asks
`bayes.next_commands` for one point per free slot, and appends those lines to
the runfile, fsynced, before the launch may start them. The runfile is thus
the only record of the search: after a kill -9 at any instant the next
launch finds every point, runs the ones that did not finish, and proposes no
point twice; nothing else needs saving. The feed ends when no job is in
flight and the optimizer has nothing more to propose (run_cap reached).

This module runs, stops and prints nothing; the launch does.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from batchrun.errors import BatchrunError, RunfileError, UsageError
from batchrun.metrics.file import METRICS_NAME, RunMetrics
from batchrun.runfile import file as runfiles  # looked up at each call: the fault tests patch it
from batchrun.runfile.file import Job, Runfile
from batchrun.store.records import JobRecord
from batchrun.sweeps.bayes import INSTALL_HINT, BayesSpec, SweepState, next_points, sweep_state
from batchrun.sweeps.hyperband import HyperbandStopper
from batchrun.sweeps.objective import read_metrics

__all__ = ["AdaptiveSweep", "BayesFeed", "adaptive_of", "load_sweep", "require_optuna", "states_of"]

# A bayes runfile's first line, written when the launch creates it.
_HEADER = "# batchrun: the points of a bayes search of {spec}, one line each, appended as they are proposed\n"


def require_optuna() -> None:
    """Refuse a bayes launch up front, in one line, when the `bayes` extra is missing."""
    try:
        import optuna  # noqa: F401 - the launch needs it for its first proposal
    except ImportError as error:
        raise UsageError(INSTALL_HINT) from error


def states_of(records: Mapping[str, JobRecord]) -> dict[str, str]:
    """Job id -> state name, as `AdaptiveSweep` takes them."""
    return {job_id: str(rec.state) for job_id, rec in records.items()}


def load_sweep(path: Path) -> AdaptiveSweep:
    """Read a gridspec for a launch: its bayes search and its hyperband stopper, where it has them.

    Raises:
        GridspecError: the spec is invalid (a bayes spec without metric or run_cap included).
        UsageError: a bayes spec and the `bayes` extra is not installed.
    """
    from batchrun.sweeps.gridspec import default_runfile_path, load_gridspec

    if not path.is_file():
        raise RunfileError("no such gridspec" if not path.exists() else "not a file", path)
    gridspec = load_gridspec(path)
    bayes = None
    if gridspec.method == "bayes":
        require_optuna()
        bayes = BayesSpec(gridspec)
    stopper = None
    if gridspec.early_terminate is not None and gridspec.metric is not None:
        stopper = HyperbandStopper(gridspec.early_terminate, gridspec.metric.name, gridspec.metric.goal)
    return AdaptiveSweep(path, default_runfile_path(path), bayes, stopper)


def adaptive_of(gridspec: Path) -> AdaptiveSweep | None:
    """A W&B spec's bayes search and hyperband, or None when it has neither."""
    sweep = load_sweep(gridspec)
    return sweep if sweep.bayes is not None or sweep.stopper is not None else None


class AdaptiveSweep:
    """What a launch of a W&B spec adds to a plain launch: proposing points, stopping runs early."""

    def __init__(self, spec: Path, runfile: Path, bayes: BayesSpec | None, stopper: HyperbandStopper | None) -> None:
        self.spec = spec
        self.runfile = runfile
        self.bayes = bayes
        self.stopper = stopper
        self.feed: BayesFeed | None = None

    def create_runfile(self) -> None:
        """Create a bayes sweep's runfile, durably, if it is absent (the launch appends to it)."""
        try:
            fd = os.open(self.runfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return
        except OSError as error:
            raise RunfileError(f"cannot create the runfile: {error.strerror}", self.runfile) from error
        try:
            resources = self.bayes.gridspec.resources if self.bayes is not None else None
            directive = f"{resources.base.directive()}\n" if resources is not None and resources.base else ""
            os.write(fd, (_HEADER.format(spec=self.spec.name) + directive).encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _state_of(self, runfile: Runfile, states: Mapping[str, str]) -> SweepState:
        assert self.bayes is not None
        return sweep_state(self.bayes, [(job.command, states.get(job.job_id), None) for job in runfile.jobs])

    def to_propose(self, runfile: Runfile, states: Mapping[str, str]) -> int:
        """How many more points the search will propose (0 for grid and random)."""
        return self._state_of(runfile, states).to_propose(self.bayes, self.bayes.run_cap) if self.bayes is not None else 0

    def plan_line(self, runfile: Runfile, states: Mapping[str, str]) -> str:
        """What the launch does beyond its runfile's jobs, in one line; `states`: job id -> state, for jobs with a record."""
        parts = []
        if self.bayes is not None:
            spec = self.bayes
            state = self._state_of(runfile, states)
            metric = spec.metric
            parts.append(f"bayes search (TPE) to {metric.goal.value} {metric.name}: {len(state.finished)} of run_cap {spec.run_cap} "
                         f"runs finished, {len(state.in_flight)} to finish, {state.to_propose(spec, spec.run_cap)} more to propose "
                         "as slots free up")
            if spec.space_size is not None:
                parts.append(f"its space has {spec.space_size} points, fewer than run_cap: the search ends when they have run")
            if state.foreign:
                parts.append(f"{state.foreign} line(s) not of this search (run, not counted)")
        if self.stopper is not None:
            config = self.stopper.config
            bands = ", ".join(map(str, config.bands[:4])) + (", ..." if len(config.bands) > 4 else "")
            parts.append(f"hyperband stops runs worse than the top 1/{config.eta:g} at {bands} logged values of {self.stopper.metric}")
        return "; ".join(parts)

    def run(self, launch: Any, plan: Any, run_tasks: Any) -> None:
        """Run the launch with the feed of new points and the hyperband monitor."""
        from batchrun.sweeps.monitor import HyperbandMonitor

        if self.bayes is not None:
            self.feed = BayesFeed(self.bayes, launch, plan.adopt + plan.to_run)
        monitor = HyperbandMonitor(self.stopper, launch) if self.stopper is not None else None
        if monitor is not None:
            monitor.start()
        try:
            if not launch.should_stop_dispatch():
                launch.run(plan, run_tasks, self.feed)
        finally:
            if monitor is not None:
                monitor.stop()
        if monitor is not None and monitor.errors:
            # A bug, not bad input: reported (after the launch is recorded) rather than hidden.
            raise monitor.errors[0]


class _FeedLaunch(Protocol):
    """The parts of a prepared `launch.Launch` the feed uses."""

    runfile: Runfile
    journal: Any
    control: Any

    @property
    def options(self) -> Any: ...

    @property
    def runs_dir(self) -> Any: ...

    def is_done(self, job_id: str) -> bool: ...

    def should_stop_dispatch(self) -> bool: ...


class BayesFeed:
    """The jobs of a bayes sweep: the plan's first, then points proposed as slots free up; thread-safe.

    A `feed.JobQueue` for the launch's windowed loader.
    """

    def __init__(self, spec: BayesSpec, launch: _FeedLaunch, pending: Iterable[Job] = ()) -> None:
        self.spec = spec
        self.launch = launch
        self.n_jobs: int = launch.options.n_jobs
        self.logs = Path(launch.runs_dir.logs)
        self.proposed = 0  # lines this launch appended
        self._backlog = deque(pending)  # the plan's jobs: points of earlier launches to run or adopt
        # Metrics of runs that ended: their files no longer change.
        self._ended: dict[tuple[str, int], RunMetrics | None] = {}
        self._lock = threading.Lock()

    def next_jobs(self, limit: int, is_done: Callable[[str], bool]) -> list[Job] | None:
        """The plan's jobs, then new points for the free slots: [] while none is free, None at the end.

        A slot is free when fewer than -j lines of the runfile are in flight
        (not done for the launch's mode: waiting, running or adopted).
        """
        launch = self.launch
        if launch.should_stop_dispatch():
            return None
        with self._lock:
            jobs: list[Job] = []
            while self._backlog and len(jobs) < limit:
                job = self._backlog.popleft()
                if not is_done(job.job_id):
                    jobs.append(job)
            if jobs:
                return jobs
            with launch.control.lock:
                lines = [(job, launch.journal.records.get(job.job_id)) for job in launch.runfile.jobs]
                in_flight = sum(1 for job, _ in lines if not launch.is_done(job.job_id))
            free = min(limit, self.n_jobs - in_flight)
            if free <= 0:
                return []
            try:
                state = sweep_state(self.spec, [(job.command, _state(rec), self._metrics(job, rec)) for job, rec in lines])
                points = next_points(self.spec, state, free)
                if not points:
                    return [] if in_flight else None
                jobs = self._append(points)
            except BatchrunError as error:
                launch.control.fail(error)
                return None
            except OSError as error:
                launch.control.fail(UsageError(f"{launch.runfile.path}: cannot append the next points: {error.strerror}"))
                return None
            self.proposed += len(jobs)
            return jobs

    def _append(self, points: list[tuple[str, dict[str, Any]]]) -> list[Job]:
        """Append the points to the runfile, fsynced, before any of them can start: the runfile is the record.

        A directive line goes before a point whose run asks for other resources than the line before it.
        """
        launch = self.launch
        resources = self.spec.gridspec.resources
        commands = [command for command, _point in points]
        requests = [resources.request_of(point) for _command, point in points] if resources is not None else None
        with launch.control.lock:
            return runfiles.append_commands(launch.runfile, commands, requests)

    def _metrics(self, job: Job, rec: JobRecord | None) -> RunMetrics | None:
        if rec is None or str(rec.state) not in _ENDED:
            return None  # the search takes only the point of a run in flight
        key = (job.job_id, rec.attempts)
        if key not in self._ended:
            self._ended[key] = read_metrics(self.logs / job.job_id / METRICS_NAME)
        return self._ended[key]


# The states of runs that ended: their values count (stopped ones' too), their files no longer change.
_ENDED = frozenset({"succeeded", "failed", "timeout", "stopped", "killed"})


def _state(rec: JobRecord | None) -> str | None:
    return None if rec is None else str(rec.state)
