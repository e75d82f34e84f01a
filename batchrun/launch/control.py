"""How `batchrun stop` and `batchrun kill` reach the running launch.

The launch holds a flock on `runs/<name>/.lock` (`metadata.acquire_lock`).
Requests travel as files in `runs/<name>/control/`, which survive any crash
on either side without harm:
- a client writes `<time>-<pid>.req` (JSON) under a dot name and renames it
  into place, so the launch never reads half a request;
- the launch's `ControlPoller` looks about every 0.2 s, acts through its
  callbacks, writes the answer `<same>.ans` the same way, then deletes the
  request; the client reads and deletes the answer;
- every request names the launch it is for: the lock holder's pid and that
  process's start time (pids are reused). A request for any other launch is
  stale (its launch died before acting) and the poller deletes it unread;
  so is a dot file or answer left for a minute by a client that died.
A client whose request disappears without an answer, or whose launch lets
go of the lock, says so: the request was not acted on.

Whether a launch holds the lock is read from /proc/locks, never by trying
the lock: a probe, even a shared one, could make a launch starting at that
instant fail to take it (`wait` asks several times a second).

`stop --now` is Ctrl-C: SIGTERM to the lock holder, which every batchrun
launch handles, so it needs no poller.

This module never prints.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.atomic import write_atomic
from batchrun.errors import UsageError
from batchrun.liveness import start_time
from batchrun.store.rundir import RunsDir, launch_holder

__all__ = ["ANSWER_TIMEOUT", "CONTROL_DIR", "POLL_INTERVAL", "Answer", "ControlPoller", "request_kill", "request_stop"]

log = logging.getLogger(__name__)

CONTROL_DIR = "control"
# How often the launch looks for requests: a stop or kill acts within this.
POLL_INTERVAL = 0.2
# How long a client waits for the launch's answer before saying it got none.
ANSWER_TIMEOUT = 10.0
# A dot file or answer older than this was left by a client that died.
_STALE_AFTER = 60.0
_VERSION = 1


@dataclass(frozen=True)
class Answer:
    """What the launch said to a request."""

    pid: int
    killing: list[str] = field(default_factory=list)  # job ids it is stopping
    not_running: list[str] = field(default_factory=list)  # job ids it is not running


def _write_atomic_json(path: Path, doc: dict[str, object]) -> None:
    write_atomic(path, json.dumps(doc))


def _holder_or_error(runs_dir: RunsDir, what: str, runfile: str) -> int:
    pid = launch_holder(runs_dir)
    if pid is None:
        raise UsageError(f"no launch of {runfile} is running ({runs_dir.path} is not locked); nothing to {what}")
    return pid


def request_stop(runs_dir: RunsDir, runfile: str, now: bool = False, timeout: float = ANSWER_TIMEOUT) -> Answer:
    """Ask the running launch to start no new job and end when its running jobs end.

    `now`: stop as Ctrl-C does (SIGTERM to the launch: its jobs get SIGTERM,
    then SIGKILL after its --grace).

    Raises:
        UsageError: no launch holds the lock, or it did not answer.
    """
    pid = _holder_or_error(runs_dir, "stop", runfile)
    if now:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            raise UsageError(f"the launch of {runfile} (pid {pid}) ended before it could be stopped") from None
        except PermissionError:
            raise UsageError(f"the launch of {runfile} (pid {pid}) belongs to another user; it cannot be stopped from here") from None
        return Answer(pid)
    return _ask(runs_dir, runfile, pid, {"action": "stop"}, timeout)


def request_kill(runs_dir: RunsDir, runfile: str, job_ids: Iterable[str], timeout: float = ANSWER_TIMEOUT) -> Answer:
    """Ask the running launch to stop these running jobs (SIGTERM, its --grace, SIGKILL); the launch goes on.

    Raises:
        UsageError: no launch holds the lock, or it did not answer.
    """
    pid = _holder_or_error(runs_dir, "kill", runfile)
    return _ask(runs_dir, runfile, pid, {"action": "kill", "job_ids": list(job_ids)}, timeout)


def _ask(runs_dir: RunsDir, runfile: str, pid: int, body: dict[str, object], timeout: float) -> Answer:
    folder = runs_dir.path / CONTROL_DIR
    try:
        folder.mkdir(exist_ok=True)
        stem = f"{time.time_ns()}-{os.getpid()}"
        request = folder / f"{stem}.req"
        _write_atomic_json(request, {"version": _VERSION, "launch": {"pid": pid, "start": start_time(pid)}, **body})
    except OSError as err:
        raise UsageError(f"{folder}: cannot write a request to the launch: {err.strerror}") from err
    answer = folder / f"{stem}.ans"
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc = json.loads(answer.read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = None
        except (OSError, ValueError):
            doc = {}
        if doc is not None:
            answer.unlink(missing_ok=True)
            if doc.get("error"):
                raise UsageError(f"the launch of {runfile} (pid {pid}) could not act on the request: {doc['error']}")
            return Answer(pid, [str(j) for j in doc.get("killing", [])], [str(j) for j in doc.get("not_running", [])])
        gone = not request.exists()
        if gone or launch_holder(runs_dir) != pid:
            # Answered meanwhile, or not acted on at all.
            if answer.exists():
                continue
            request.unlink(missing_ok=True)
            raise UsageError(f"the launch of {runfile} (pid {pid}) ended before it acted on the request")
        if time.monotonic() >= deadline:
            request.unlink(missing_ok=True)
            raise UsageError(
                f"the launch of {runfile} (pid {pid}) did not answer within {timeout:g} s "
                "(is it a batchrun without stop/kill support? `batchrun stop --now` works with any)"
            )
        time.sleep(0.02)


class ControlPoller:
    """The launch side: acts on requests through callbacks, in a thread of its own.

    `on_stop(now)` is called for `stop`; `on_kill(job_ids)` for `kill`, and
    returns the ids it is stopping (the others are answered "not running").
    Callbacks must not block: they start the stop, they do not wait for it.
    """

    def __init__(
        self,
        runs_dir: RunsDir,
        on_stop: Callable[[bool], None],
        on_kill: Callable[[list[str]], Iterable[str]],
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.folder = runs_dir.path / CONTROL_DIR
        self.on_stop = on_stop
        self.on_kill = on_kill
        self.interval = interval
        self.pid = os.getpid()
        self._start = start_time(self.pid)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Clear what earlier launches left and start looking; call with the lock held."""
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as err:
            log.warning("%s: cannot create the control directory: %s", self.folder, err.strerror)
        self.poll_once()
        self._thread = threading.Thread(target=self._loop, name="batchrun-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop looking (before the lock is released)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.poll_once()
            except Exception:  # a bad request must never end the launch
                log.exception("control request failed")

    def poll_once(self) -> int:
        """Act on every request waiting now; how many were acted on."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.folder))
        except OSError:
            return 0
        acted = 0
        now = time.time()
        for name in names:
            path = self.folder / name
            if name.startswith(".") or name.endswith(".ans"):
                self._drop_if_old(path, now)
            elif name.endswith(".req"):
                acted += self._handle(path)
        return acted

    def _drop_if_old(self, path: Path, now: float) -> None:
        try:
            if now - os.stat(path).st_mtime > _STALE_AFTER:
                path.unlink(missing_ok=True)
        except OSError:
            pass

    def _handle(self, path: Path) -> int:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError):
            doc = None
        launch = doc.get("launch") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or doc.get("version") != _VERSION or launch != {"pid": self.pid, "start": self._start}:
            path.unlink(missing_ok=True)  # for a launch that is gone, or not a request at all
            return 0
        answer: dict[str, object] = {}
        try:
            if doc.get("action") == "stop":
                self.on_stop(bool(doc.get("now", False)))
            elif doc.get("action") == "kill":
                wanted = [str(j) for j in doc.get("job_ids", [])]
                killing = set(self.on_kill(wanted))
                answer = {"killing": [j for j in wanted if j in killing], "not_running": [j for j in wanted if j not in killing]}
            else:
                path.unlink(missing_ok=True)
                return 0
        except Exception as err:  # a bug in acting must not end the launch, nor come back every poll
            log.exception("control request %s failed", path.name)
            answer = {"error": f"{type(err).__name__}: {err}"}
        try:
            _write_atomic_json(path.with_suffix(".ans"), answer)
        except OSError as err:
            log.warning("%s: cannot answer a control request: %s", path, err.strerror)
        path.unlink(missing_ok=True)
        return 1
