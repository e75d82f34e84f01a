"""The SLURM client commands the executor runs, and squeue's answers shared between its threads.

One `SlurmCommands` per executor: it runs sbatch, squeue and scancel in
sessions of their own, keeps squeue's latest answer per array so that the
monitor, the stopper and adoption share one call a second, and turns a
missing command or a timeout into an ExecutorError. Output that is not
UTF-8 (a command name squeue shows) is read with replacement characters:
squeue's answers are parsed, never trusted to decode.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from batchrun.errors import ExecutorError
from batchrun.executors.slurm.text import ENDED, is_slurm_ref, parse_squeue

__all__ = ["COMMAND_TIMEOUT", "SlurmCommands"]

log = logging.getLogger(__name__)

# SLURM client commands get this long; a dead controller fails them in about 10 s.
COMMAND_TIMEOUT = 60.0
# Job ids per scancel call, to stay far below the argument-length limit.
_SCANCEL_CHUNK = 500


class SlurmCommands:
    """sbatch, squeue and scancel for one executor, with squeue's answers cached."""

    def __init__(self, cwd: str, env: dict[str, str], clusters: list[str], watched: Callable[[], Iterable[str]]) -> None:
        self._cwd = cwd
        self._env = env
        # The user's --clusters option, which every command then needs.
        self.clusters = clusters
        # The references the executor watches: each squeue call covers their arrays too.
        self._watched = watched
        # squeue's answers, ref -> (state, command), and when each array was asked about.
        self._states: dict[str, tuple[str, str]] = {}
        self._asked: dict[str, float] = {}
        self._squeue_lock = threading.Lock()
        self._user_tasks: tuple[float, dict[str, tuple[str, str]]] | None = None

    def ended(self, ref: str) -> bool:
        """Whether the last squeue answer said this task runs nothing any more."""
        return self._states.get(ref, ("",))[0] in ENDED

    def run(self, args: list[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a SLURM command; a missing command or a timeout is an ExecutorError."""
        log.debug("running %s", shlex.join(args[:12]))
        try:
            # Its own session: a Ctrl-C at batchrun's terminal must not kill
            # an sbatch half-way (did it submit or not?).
            return subprocess.run(
                args, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                cwd=self._cwd, env=self._env, errors="replace", start_new_session=True,
            )
        except OSError as err:
            raise ExecutorError(f"cannot run {args[0]}: {err.strerror}; --executor slurm needs the SLURM client commands") from err
        except subprocess.TimeoutExpired as err:
            raise ExecutorError(f"{args[0]} did not answer within {timeout:.0f} s; is the SLURM controller up?") from err

    def squeue_user(self, all_states: bool, max_age: float = 0.0) -> dict[str, tuple[str, str]] | None:
        """Every array task of this user squeue shows (with ended ones if `all_states`); None if it did not answer.

        An answer with ended tasks is kept `max_age` seconds: adopting after
        a kill asks about every job, and one call answers for all.
        """
        with self._squeue_lock:
            if all_states and self._user_tasks is not None and time.monotonic() - self._user_tasks[0] <= max_age:
                return self._user_tasks[1]
            try:
                answer = self.run(["squeue", "-h", "-r", *(["-t", "all"] if all_states else []), "-u", str(os.getuid()), "-o", "%i %T %o", *self.clusters])
            except ExecutorError:
                return None
            if answer.returncode != 0:
                return None
            tasks = parse_squeue(answer.stdout)
            if all_states:
                self._user_tasks = (time.monotonic(), tasks)
            return tasks

    def states_for(self, refs: Iterable[str], max_age: float) -> dict[str, tuple[str, str]] | None:
        """squeue's (state, command) of `refs`, at most `max_age` seconds old; None if SLURM did not answer.

        One squeue call covers the arrays asked about and every array watched,
        so the monitor, the stopper and adoption share one call a second.
        """
        refs = [ref for ref in refs if is_slurm_ref(ref)]
        with self._squeue_lock:
            now = time.monotonic()
            arrays = {ref.split("_")[0] for ref in [*refs, *self._watched()]}
            stale = {array for array in arrays if now - self._asked.get(array, -1e9) > max_age}
            if stale:
                args = ["squeue", "-h", "-r", "-t", "all", "-o", "%i %T %o", "-j", ",".join(sorted(stale)), *self.clusters]
                try:
                    answer = self.run(args)
                except ExecutorError:
                    return None
                # When every id was purged squeue exits 1: "Invalid job id specified".
                if answer.returncode != 0 and "Invalid job id" not in answer.stderr:
                    log.debug("squeue failed: %s", answer.stderr.strip())
                    return None
                for ref in [ref for ref in self._states if ref.split("_")[0] in stale]:
                    del self._states[ref]
                self._states.update(parse_squeue(answer.stdout))
                self._asked.update(dict.fromkeys(stale, now))
            return {ref: self._states[ref] for ref in refs if ref in self._states}

    def scancel(self, options: list[str], refs: list[str]) -> None:
        refs = list(dict.fromkeys(refs))
        for first in range(0, len(refs), _SCANCEL_CHUNK):
            try:
                answer = self.run(["scancel", *options, *self.clusters, *refs[first : first + _SCANCEL_CHUNK]])
            except ExecutorError as error:
                log.debug("scancel failed: %s", error)
                continue
            if answer.returncode != 0:
                # Also when some tasks had already ended: harmless.
                log.debug("scancel: %s", answer.stderr.strip())

    def find_array(self, manifest: Path, max_age: float = 0.0) -> str | None:
        """The job id of the array submitted with this manifest, from the commands squeue shows."""
        for ref, (_, command) in (self.squeue_user(all_states=True, max_age=max_age) or {}).items():
            if command.endswith(f" {manifest}"):
                return ref.split("_")[0]
        return None

    def deliver(self, signals: list[tuple[str, int]]) -> None:
        """scancel each (ref, signal): a signal reaches running tasks; TERM and KILL also cancel queued ones."""
        states = self.states_for([ref for ref, _ in signals], max_age=0.2) or {}
        by_name: dict[str, list[str]] = {}
        cancel: list[str] = []
        for ref, sig in signals:
            state = states.get(ref, ("PENDING", ""))[0]
            running = state not in ENDED and state != "PENDING"
            if running:
                # --full: the batch script and its children, not just job steps.
                by_name.setdefault(signal.Signals(sig).name[3:], []).append(ref)
            if sig == signal.SIGKILL or (sig == signal.SIGTERM and not running):
                # A signal sent to a queued task fails its queued siblings
                # too; plain scancel removes just that task.
                cancel.append(ref)
        for name, refs in by_name.items():
            self.scancel(["--signal", name, "--full"], refs)
        self.scancel([], cancel)
