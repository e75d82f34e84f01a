"""batchrun inside your own dodo.py: the public task API.

    from batchrun.dodo import DOIT_CONFIG, runfile_tasks, sweep_tasks

    def task_exp():
        yield from runfile_tasks("exp.runfile")

    task_grid_sweep, task_grid = sweep_tasks("grid.yml")

Run with plain `doit -n 4`: the jobs, their runs directory, logs,
metadata.json, job ids and resume rules are those of `batchrun launch`, and
doit's database is batchrun's journal (the `batchrun` backend), so
`doit forget exp:<id>`, `doit ignore`, `doit list --status`, `doit info` and
`doit dumpdb` act on the same records. Import `DOIT_CONFIG` (or merge it into
yours): it selects thread mode, which one launch of a runs directory needs
(it cannot span the processes doit's default mode forks), and that backend.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidDodoFile, TaskFailed

from batchrun._doit.backend import JobDone, RunsDirJobs, register_jobs
from batchrun._doit.results_task import results_task
from batchrun._doit.runner import BACKEND_NAME, JobAction, job_title
from batchrun._doit.sweep import sweep_task
from batchrun._doit.values import VALUES_FILE
from batchrun.errors import BatchrunError
from batchrun.launch.launch import Launch, LaunchOptions, LaunchResult
from batchrun.launch.options import Mode
from batchrun.runfile.file import Job, Runfile, load_runfile
from batchrun.store.records import JobRecord
from batchrun.store.rundir import RunsDir

__all__ = ["DOIT_CONFIG", "results_task", "runfile_tasks", "sweep_task", "sweep_tasks"]

# What doit needs to run batchrun tasks: thread mode; the journal backend
# (job tasks live in runs/<name>/jobs.journal, other tasks' values in
# .doit.journal); and doit's default verbosity, which leaves job output in
# the job's log files.
DOIT_CONFIG: dict[str, Any] = {"par_type": "thread", "backend": BACKEND_NAME, "dep_file": VALUES_FILE}


class _Session:
    """One runs directory driven by plain `doit`: a Launch prepared on first use.

    Task creation (which also happens for `doit list`) only reads the
    journal; the runs directory is locked and recovered when the first job
    task actually runs, and metadata.json is finished when the group task
    runs or, failing that, when the process exits. The launch's steps are
    those `batchrun launch` takes (`prepare`, `start`, `run_job` for each
    job, `finish`); only doit, not `Launch.run`, picks the jobs.
    """

    def __init__(self, runfile: Runfile, options: LaunchOptions, group: str) -> None:
        self.runfile = runfile
        self.options = options
        self.launch: Launch | None = None
        self.result: LaunchResult | None = None
        self._lock = threading.Lock()
        runs_dir = RunsDir.for_runfile(runfile.path, options.accounting_dir, options.metadata_name)
        # A dict: membership as fast as a set, and `doit dumpdb` in runfile order.
        self.jobs = RunsDirJobs(runs_dir, dict.fromkeys(job.job_id for job in runfile.jobs), options.mode)
        register_jobs(f"{group}:", self.jobs)
        self._pid = os.getpid()

    def get(self) -> Launch:
        if os.getpid() != self._pid:
            # doit's process mode forks workers; one launch cannot span them.
            raise BatchrunError(
                "batchrun tasks need doit's thread mode: put DOIT_CONFIG = {'par_type': 'thread'} "
                "in dodo.py (or run doit -P thread)"
            )
        with self._lock:
            if self.result is not None:
                raise BatchrunError(f"{self.runfile.path}: its jobs already finished in this doit run")
            if self.launch is None:
                launch = Launch(self.runfile, self.options)
                launch.start(launch.prepare())
                self.jobs.use_journal(launch.journal)
                self.launch = launch
                _SESSIONS.append(self)
            return self.launch

    def run_job(self, job: Job) -> JobRecord | None:
        self.jobs.in_run = True
        launch = self.get()
        # doit decided from its database. Under another backend than
        # batchrun's (a dodo.py with a DOIT_CONFIG of its own), that database
        # is written only when a run ends, so after a kill it forgets jobs the
        # journal holds: the journal keeps the last word, nothing runs twice.
        if launch.is_done(job.job_id):
            return self.jobs.record(job.job_id)
        return launch.run_job(job)

    @property
    def fatal(self) -> BatchrunError | None:
        return self.launch.fatal if self.launch is not None else None

    def finish(self) -> LaunchResult | None:
        """Write metadata.json and release the runs directory (idempotent)."""
        with self._lock:
            if self.launch is None or self.result is not None:
                return self.result
            launch = self.launch
            if launch.running_jobs():
                launch.request_stop()
            launch.stop_background()
            self.result = launch.finish()
            return self.result


_SESSIONS: list[_Session] = []
_HANDLERS_INSTALLED = False


def _finish_all() -> None:
    for session in list(_SESSIONS):
        session.finish()


def _install_handlers() -> None:
    """Ctrl-C or SIGTERM under plain doit stops the jobs as `batchrun launch` does.

    Installed from task creation, which runs in doit's main thread. With no
    job running the previous handler runs (doit's usual KeyboardInterrupt).
    """
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    import atexit
    import signal

    atexit.register(_finish_all)
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        active = [s.launch for s in _SESSIONS if s.launch is not None and s.result is None]
        if any(launch.running_jobs() for launch in active):
            for launch in active:
                launch.request_stop()
            return
        prev = previous.get(signum)
        if callable(prev):
            prev(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, handler)
    _HANDLERS_INSTALLED = True


def _finish_action(session: _Session) -> TaskFailed | None:
    """The group task: write metadata.json and fail if any job failed."""
    result = session.finish()
    if result is None:
        return None
    if result.error is not None:
        return TaskFailed(f"batchrun: {result.error}")
    if result.interrupted:
        return TaskFailed(f"batchrun: {session.runfile.path}: interrupted; run again to finish")
    if result.failed:
        names = ", ".join(f"{job.job_id} ({f'exit {rec.status}' if rec.status is not None else rec.state})" for job, rec in result.failed[:5])
        more = f" and {result.failures - 5} more" if result.failures > 5 else ""
        return TaskFailed(
            f"batchrun: {result.failures} job(s) of {session.runfile.path} failed: {names}{more}; "
            f"logs in {result.runs_dir / 'logs'}"
        )
    return None


def _options(runs_dir: str | Path | None, retry_failed: bool, env: dict[str, str] | None, grace: float) -> LaunchOptions:
    return LaunchOptions(
        # Enough slots for any doit -n; a job takes the lowest free slot.
        n_jobs=256,
        mode=Mode.RETRY_FAILED if retry_failed else Mode.RESUME,
        accounting_dir=Path(runs_dir) if runs_dir is not None else None,
        env=dict(env or {}),
        grace=grace,
    )


def runfile_tasks(
    runfile: str | Path,
    *,
    basename: str | None = None,
    runs_dir: str | Path | None = None,
    retry_failed: bool = False,
    env: dict[str, str] | None = None,
    grace: float = 10.0,
    task_dep: Sequence[str] = (),
) -> Iterator[dict[str, Any]]:
    """Yield the doit tasks of a runfile, for a `task_*` function of a dodo.py.

    One task per line, named `<basename>:<job id>`, whose up-to-date check
    and records are the same as `batchrun launch` (the same runs directory,
    journal, metadata.json and job ids: start with doit, finish with
    batchrun launch, or the other way round). A last subtask,
    `<basename>:summary`, runs after all of them, writes metadata.json and
    fails if a job failed, so a task with `task_dep: ["<basename>"]` runs
    only once every job has succeeded.

    Args:
        runfile: the runfile; its stem names `runs/<stem>/`.
        basename: the group's name (default: the runfile's stem).
        runs_dir: keep logs and metadata.json here instead of `runs/<stem>/`.
        retry_failed: rerun failed and interrupted jobs too.
        env: extra environment for every job.
        grace: seconds jobs get after SIGTERM on Ctrl-C before SIGKILL.
        task_dep: tasks every job waits for (data preparation, a build).
    """
    path = Path(runfile)
    group = basename or path.stem
    try:
        loaded = load_runfile(path)
        session = _Session(loaded, _options(runs_dir, retry_failed, env, grace), group)
    except BatchrunError as err:
        # doit prints this as one line, without a traceback.
        raise InvalidDodoFile(f"batchrun: {err}") from err
    _install_handlers()
    yield {"basename": group, "name": None, "doc": f"all {len(loaded.jobs)} jobs of {path} (batchrun)"}
    for job in loaded.jobs:
        yield {
            "basename": group,
            "name": job.job_id,
            "actions": [JobAction(session, job)],
            "uptodate": [JobDone(session.jobs, job.job_id)],
            "doc": job.command,
            "title": job_title,
            "io": {"capture": False},
            "task_dep": list(task_dep),
        }
    # doit drops a group task's own actions, so the summary is a subtask that
    # runs after every job: the group (and `task_dep` on it) fails with it.
    yield {
        "basename": group,
        "name": "summary",
        "actions": [(_finish_action, [session])],
        "task_dep": [f"{group}:{job.job_id}" for job in loaded.jobs],
        "doc": f"write metadata.json; fail if a job of {path} failed",
        "verbosity": 2,
    }


def sweep_tasks(
    gridspec: str | Path,
    *,
    basename: str | None = None,
    runs_dir: str | Path | None = None,
    retry_failed: bool = False,
    env: dict[str, str] | None = None,
    task_dep: Sequence[str] = (),
) -> tuple[Callable[[], dict[str, Any]], Callable[[], Iterator[dict[str, Any]]]]:
    """Two task creators for a dodo.py: the sweep, and its runs created after it.

        task_grid_sweep, task_grid = sweep_tasks("grid.yml")

    defines `grid_sweep` (gridspec -> runfile) and `grid` (one task per
    point, created by doit once `grid_sweep` has run: delayed creation).
    `task_dep` names tasks every point waits for (say, data preparation).
    """
    from doit import create_after

    from batchrun.sweeps.gridspec import default_runfile_path

    spec = Path(gridspec)
    runfile = default_runfile_path(spec)
    group = basename or spec.stem

    def task_sweep() -> dict[str, Any]:
        task = sweep_task(spec, runfile)
        task["task_dep"] = list(task_dep)
        return task

    @create_after(executed=f"{group}_sweep")
    def task_runs() -> Iterator[dict[str, Any]]:
        yield from runfile_tasks(runfile, basename=group, runs_dir=runs_dir, retry_failed=retry_failed, env=env, task_dep=task_dep)

    task_sweep.__doc__ = f"write {runfile} from {spec}"
    task_runs.__doc__ = f"run every point of {spec}"
    return task_sweep, task_runs
