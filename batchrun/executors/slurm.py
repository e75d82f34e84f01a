"""Run jobs as tasks of SLURM job arrays, and find them again.

Jobs that start together go to SLURM together: `start` queues its job, and a
submitter thread sends every job queued within a short window (or as soon as
every free slot asked) as one `sbatch --array=0-K%N`; `start_many` (--detach)
sends all pending jobs as one array. Before submitting, the executor writes a
manifest under `<runs_dir>/slurm/`: line K+1 holds task K's job id, the
environment it needs beyond batchrun's own, and its command, shell-quoted.
Every task runs one script that reads its line, sends its output to the job's
log files, cds to the launch's directory and runs the command under the local
executor's wrapper, which writes `<log dir>/exit`. Results never depend on
SLURM's accounting (`sacct` is not used).

One monitor thread serves every `wait`: it reads the exit records every
quarter second and asks `squeue` about all watched tasks once a second. A
task SLURM no longer runs that leaves no exit record within a few seconds was
lost (cancelled, node failure, launch failure) and ends with status -9, never
as a success. Signals are gathered the same way into a few `scancel` calls.

References are `ARRAYID_TASK`. A later launch asks `squeue` whether a task is
still queued or running and adopts it; a job whose reference the journal
missed (batchrun killed between sbatch and the journal line) is found again
through its manifest line and the `submitted` log, or the command squeue shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.errors import ExecutorError
from batchrun.executors import Executor, ExecutorOptions
from batchrun.executors.local import (
    _WRAPPER,
    EXIT_NAME,
    group_alive,
    job_lock_held,
    kill_group,
    read_exit_record,
    wait_for_job_lock,
)

__all__ = ["SUBMITTED_NAME", "TASK_SCRIPT_NAME", "SlurmExecutor", "is_slurm_ref", "manifest_line", "parse_squeue", "shell_quote"]

log = logging.getLogger(__name__)

TASK_SCRIPT_NAME = "batchrun-task.sh"
# One line per sbatch, "<manifest name> <array id> <tasks>": finds jobs the journal has no reference for.
SUBMITTED_NAME = "submitted"

# How long the submitter waits for more jobs to join one sbatch.
_COLLECT_WINDOW = 0.03
# How long signals gather before one round of scancel.
_SIGNAL_WINDOW = 0.02
# How often waited-for jobs' exit records are read.
_FILE_POLL = 0.25
# How often the monitor asks squeue about the jobs it watches.
_SQUEUE_INTERVAL = 1.0
# How long a job SLURM no longer runs may take to show its exit record (a
# shared filesystem can show a new file late) before it counts as lost.
_LOST_GRACE = 5.0
# The same for a job batchrun itself signalled.
_CANCELLED_GRACE = 1.0
# What `wait` returns for a lost job: killed, as by SIGKILL; never a success.
_LOST_STATUS = -9
# How old an answer `alive` accepts (the stopper asks every 50 ms).
_ALIVE_MAX_AGE = 0.25
# SLURM client commands get this long; a dead controller fails them in about 10 s.
_COMMAND_TIMEOUT = 60.0
_OPEN_TIMEOUT = 20.0
# Tasks per array when `scontrol show config` does not say (SLURM's default MaxArraySize is 1001).
_DEFAULT_MAX_ARRAY = 1000
# Job ids per scancel call, to stay far below the argument-length limit.
_SCANCEL_CHUNK = 500
# squeue states after which a task runs nothing any more; any other state is queued or running.
_ENDED = frozenset(
    {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"}
)
_REF = re.compile(r"^(\d+)_(\d+)$")
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# sbatch options batchrun sets itself.
_RESERVED_SBATCH = ("--array", "-a", "--wrap", "--parsable")


def is_slurm_ref(ref: str | None) -> bool:
    """Whether a journal reference names a SLURM array task (`ARRAYID_TASK`), not a local pid."""
    return ref is not None and _REF.match(ref) is not None


def shell_quote(text: str) -> str:
    """Quote `text` for /bin/sh on one line (a newline becomes `"$__batchrun_nl"`)."""
    return '"$__batchrun_nl"'.join(shlex.quote(part) for part in text.split("\n"))


def manifest_line(job_id: str, command: str, env: dict[str, str], base_env: dict[str, str]) -> str:
    """One job's manifest line: `: JOB_ID`, the environment that differs from `base_env`, the command."""
    parts = [f": {job_id}"]
    exports = [f"{key}={shell_quote(value)}" for key, value in env.items() if base_env.get(key) != value and _SHELL_NAME.match(key)]
    if exports:
        parts.append("export " + " ".join(exports))
    unsets = [key for key in base_env if key not in env and _SHELL_NAME.match(key)]
    if unsets:
        parts.append("unset " + " ".join(unsets))
    parts.append(f"__batchrun_cmd={shell_quote(command)}")
    return "; ".join(parts) + "\n"


def _task_script(cwd: str) -> str:
    """The script every array task runs, with its manifest's path as $1.

    A failed redirection makes the shell exit with no exit record: the job
    is lost. The command itself runs exactly as the local executor runs it.
    """
    return (
        "#!/bin/sh\n"
        "# batchrun: array task K runs the job on line K+1 of the manifest $1.\n"
        "__batchrun_nl='\n'\n"
        '__batchrun_line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1)){p;q;}" "$1") && [ -n "$__batchrun_line" ] || {\n'
        '    echo "batchrun: no line for task $SLURM_ARRAY_TASK_ID in $1" >&2; exit 1; }\n'
        'eval "$__batchrun_line"\n'
        'exec </dev/null >"$BATCHRUN_LOG_DIR/out.log" 2>"$BATCHRUN_LOG_DIR/err.log"\n'
        f'cd {shell_quote(cwd)} || {{ echo 1 >"$BATCHRUN_LOG_DIR/{EXIT_NAME}"; exit 1; }}\n'
        f'exec /bin/sh -c {shlex.quote(_WRAPPER)} /bin/sh "$__batchrun_cmd"\n'
    )


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    """`squeue -h -r -o "%i %T %o"` output -> {ref: (state, command)}, array tasks only."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) >= 2 and _REF.match(parts[0]):
            states[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return states


def _cluster_option(sbatch_args: list[str]) -> list[str]:
    """The user's `--clusters` sbatch option, which squeue and scancel then need as well."""
    for i, arg in enumerate(sbatch_args):
        if arg in ("-M", "--clusters") and i + 1 < len(sbatch_args):
            return [f"--clusters={sbatch_args[i + 1]}"]
        if arg.startswith("--clusters="):
            return [arg]
        if arg.startswith("-M") and len(arg) > 2:
            return [f"--clusters={arg[2:]}"]
    return []


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else "no message"


@dataclass
class _Request:
    """A job waiting to be submitted, then its reference or the error."""

    job_id: str
    command: str
    log_dir: str
    env: dict[str, str]
    done: threading.Event = field(default_factory=threading.Event)
    ref: str | None = None
    error: ExecutorError | None = None


@dataclass
class _Tracked:
    """A job the monitor watches for a `wait`."""

    log_dir: str
    owned: bool = False  # started by start(): counts against -j
    done: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    gone_since: float | None = None
    signalled: int | None = None  # the last signal batchrun sent it


class SlurmExecutor(Executor):
    """Jobs as tasks of SLURM job arrays, submitted with sbatch."""

    name = "slurm"

    def __init__(self, options: ExecutorOptions) -> None:
        super().__init__(options)
        self.slurm_dir = Path(options.runs_dir) / "slurm"
        self._script = self.slurm_dir / TASK_SCRIPT_NAME
        # sbatch hands this environment to the tasks; manifests add what jobs need on top.
        self._submit_env = dict(os.environ)
        self._clusters = _cluster_option(options.sbatch_args)
        self._max_array = _DEFAULT_MAX_ARRAY
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._queue: list[_Request] = []
        self._outstanding = 0
        self._recent: deque[str] = deque(maxlen=options.n_jobs)
        self._batches = 0
        self._tracked: dict[str, _Tracked] = {}
        self._log_dirs: dict[str, str] = {}  # jobs of start_many, in case someone waits
        self._signals: list[tuple[str, int]] = []
        # squeue's answers, ref -> (state, command), and when each array was asked about.
        self._states: dict[str, tuple[str, str]] = {}
        self._asked: dict[str, float] = {}
        self._squeue_lock = threading.Lock()
        self._user_tasks: tuple[float, dict[str, tuple[str, str]]] | None = None
        self._resolved: dict[str, str | None] = {}
        self._manifest_index: dict[str, tuple[str, int]] | None = None

    # -- set-up -------------------------------------------------------------

    def open(self) -> None:
        for arg in self.options.sbatch_args:
            if arg.split("=", 1)[0] in _RESERVED_SBATCH:
                raise ExecutorError(f"--sbatch-args must not contain {arg!r}: batchrun submits job arrays itself")
        if shutil.which("sbatch") is None:
            raise ExecutorError("sbatch not found on PATH: --executor slurm needs the SLURM client commands (sbatch, squeue, scancel)")
        answer = self._run(["sinfo", "-h", "-o", "%P", *self._clusters], _OPEN_TIMEOUT)
        if answer.returncode != 0:
            raise ExecutorError(f"the SLURM controller does not answer (sinfo: {_last_line(answer.stderr)}); is slurmctld running?")
        config = self._run(["scontrol", "show", "config"], _OPEN_TIMEOUT)
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config.stdout, re.MULTILINE)
        if config.returncode == 0 and match:
            self._max_array = max(1, int(match.group(1)))
        try:
            self.slurm_dir.mkdir(parents=True, exist_ok=True)
            text = _task_script(self.options.cwd)
            if not self._script.exists() or self._script.read_text() != text:
                # Replaced, not rewritten: sbatch may be reading the old one.
                tmp = self._script.with_name(f".{TASK_SCRIPT_NAME}.{os.getpid()}")
                tmp.write_text(text)
                tmp.chmod(0o755)
                tmp.replace(self._script)
        except OSError as err:
            raise ExecutorError(f"{self.slurm_dir}: cannot write the SLURM task script: {err.strerror}") from err
        for target in (self._submit_loop, self._monitor_loop, self._signal_loop):
            thread = threading.Thread(target=target, name=f"batchrun-slurm{target.__name__[:-5]}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        with self._cond:
            self._closed.set()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        if self._threads:
            self._threads = []
            self._remove_spent()

    def _remove_spent(self) -> None:
        """Remove manifests no queued or running task will read, and empty SLURM output files."""
        try:
            files = [path for path in self.slurm_dir.iterdir() if path.suffix in (".manifest", ".out")]
        except OSError:
            return
        active = self._squeue_user(all_states=False) if files else None
        if active is None:
            return
        commands = [command for _, command in active.values()]
        outputs = {self.slurm_dir / f"{ref.split('_')[0]}.out" for ref in active}
        for path in files:
            in_use = path in outputs or any(command.endswith(f" {path}") for command in commands)
            with contextlib.suppress(OSError):
                if not in_use and (path.suffix == ".manifest" or path.stat().st_size == 0):
                    path.unlink()

    def _run(self, args: list[str], timeout: float = _COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run a SLURM command; a missing command or a timeout is an ExecutorError."""
        log.debug("running %s", shlex.join(args[:12]))
        try:
            # Its own session: a Ctrl-C at batchrun's terminal must not kill
            # an sbatch half-way (did it submit or not?).
            return subprocess.run(
                args, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                cwd=self.options.cwd, env=self._submit_env, start_new_session=True,
            )
        except OSError as err:
            raise ExecutorError(f"cannot run {args[0]}: {err.strerror}; --executor slurm needs the SLURM client commands") from err
        except subprocess.TimeoutExpired as err:
            raise ExecutorError(f"{args[0]} did not answer within {timeout:.0f} s; is the SLURM controller up?") from err

    def _squeue_user(self, all_states: bool, max_age: float = 0.0) -> dict[str, tuple[str, str]] | None:
        """Every array task of this user squeue shows (with ended ones if `all_states`); None if it did not answer.

        An answer with ended tasks is kept `max_age` seconds: adopting after
        a kill asks about every job, and one call answers for all.
        """
        with self._squeue_lock:
            if all_states and self._user_tasks is not None and time.monotonic() - self._user_tasks[0] <= max_age:
                return self._user_tasks[1]
            try:
                answer = self._run(["squeue", "-h", "-r", *(["-t", "all"] if all_states else []), "-u", str(os.getuid()), "-o", "%i %T %o", *self._clusters])
            except ExecutorError:
                return None
            if answer.returncode != 0:
                return None
            tasks = parse_squeue(answer.stdout)
            if all_states:
                self._user_tasks = (time.monotonic(), tasks)
            return tasks

    # -- submitting ---------------------------------------------------------

    def start(self, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> str:
        _prepare_log_dir(log_dir)
        request = _Request(job_id, command, log_dir, env)
        with self._cond:
            if self._closed.is_set() or not self._threads:
                raise ExecutorError("the SLURM executor is not open")
            self._queue.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.ref is not None
        return request.ref

    def start_many(self, jobs: Sequence[tuple[str, str, str, dict[str, str]]]) -> list[str]:
        """Submit jobs (job_id, command, log_dir, env) as one array of which at most -j tasks run.

        An array larger than SLURM's MaxArraySize is split, each part waiting
        for the one before, so that -j still holds.
        """
        requests = []
        for job_id, command, log_dir, env in jobs:
            _prepare_log_dir(log_dir)
            requests.append(_Request(job_id, command, log_dir, env))
        self._submit(requests, chain=True, track=False)
        return [request.ref or "" for request in requests]

    def _submit_loop(self) -> None:
        n_jobs = self.options.n_jobs
        while True:
            with self._cond:
                while not self._queue and not self._closed.is_set():
                    self._cond.wait()
                if not self._queue:
                    return
                # Gather until every free slot asked (workers start together
                # after a round of jobs ended) or the window closes.
                deadline = time.monotonic() + _COLLECT_WINDOW
                while len(self._queue) < n_jobs - self._outstanding and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch, self._queue = self._queue, []
                # -j jobs already out and nobody waiting: one thread starts
                # everything (--detach). Each job then waits for the one
                # submitted -j jobs before it, so -j still holds.
                after = self._recent[0] if self._outstanding >= n_jobs and len(self._recent) == n_jobs else None
            try:
                self._submit(batch, after=after)
            except Exception as error:  # noqa: BLE001 - a bug must not leave the workers waiting forever
                if not isinstance(error, ExecutorError):
                    log.exception("SLURM submission failed")
                    error = ExecutorError(f"SLURM submission failed: {type(error).__name__}: {error}")
                for request in batch:
                    request.error = error
            finally:
                for request in batch:
                    request.done.set()

    def _submit(self, requests: list[_Request], after: str | None = None, chain: bool = False, track: bool = True) -> None:
        """sbatch `requests` as arrays of at most MaxArraySize tasks and set their refs."""
        for first in range(0, len(requests), self._max_array):
            chunk = requests[first : first + self._max_array]
            with self._lock:
                self._batches += 1
                manifest = self.slurm_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._batches:05d}.manifest"
            text = "".join(manifest_line(r.job_id, r.command, r.env, self._submit_env) for r in chunk)
            try:
                manifest.write_bytes(text.encode("utf-8", "surrogateescape"))
            except OSError as err:
                raise ExecutorError(f"{manifest}: cannot write the SLURM manifest: {err.strerror}") from err
            args = ["sbatch", "--parsable", f"--array=0-{len(chunk) - 1}%{min(self.options.n_jobs, len(chunk))}"]
            args += [f"--job-name=batchrun-{Path(self.options.runs_dir).name}", f"--output={self.slurm_dir}/%A.out", "--open-mode=append"]
            args += [f"--dependency=afterany:{after}"] if after is not None else []
            array_id = self._sbatch([*args, *self.options.sbatch_args, str(self._script), str(manifest)], manifest)
            _append_line(self.slurm_dir / SUBMITTED_NAME, f"{manifest.name} {array_id} {len(chunk)}\n")
            with self._cond:
                for task, request in enumerate(chunk):
                    request.ref = ref = f"{array_id}_{task}"
                    self._recent.append(ref)
                    if track:
                        self._tracked[ref] = _Tracked(request.log_dir, owned=True)
                        self._outstanding += 1
                    else:
                        self._log_dirs[ref] = request.log_dir
            if chain:
                after = array_id

    def _sbatch(self, args: list[str], manifest: Path) -> str:
        """Submit; the array's job id."""
        try:
            answer = self._run(args)
        except ExecutorError as error:
            failure = error
        else:
            # --parsable prints "ID", or "ID;CLUSTER" on a multi-cluster set-up.
            array_id = _last_line(answer.stdout).split(";")[0]
            if answer.returncode == 0 and array_id.isdigit():
                return array_id
            failure = ExecutorError(f"sbatch failed: {_last_line(answer.stderr or answer.stdout)}")
        # A timed-out or garbled sbatch may still have submitted: never twice.
        found = self._find_array(manifest)
        if found is not None:
            return found
        raise failure

    # -- waiting ------------------------------------------------------------

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        with self._lock:
            tracked = self._tracked.get(ref) or self._tracked.setdefault(ref, _Tracked(self._log_dirs[ref]))
        if not tracked.done.wait(timeout):
            return None
        self._untrack(ref, tracked)
        assert tracked.status is not None
        return tracked.status

    def _untrack(self, ref: str, tracked: _Tracked) -> None:
        with self._cond:
            if self._tracked.get(ref) is tracked:
                del self._tracked[ref]
                if tracked.owned:
                    self._outstanding -= 1
                    self._cond.notify_all()

    def _monitor_loop(self) -> None:
        last_asked = 0.0
        while not self._closed.wait(_FILE_POLL):
            try:
                last_asked = self._monitor_once(last_asked)
            except Exception:  # noqa: BLE001 - the monitor must outlive a bug in one round
                log.exception("SLURM monitor round failed")

    def _monitor_once(self, last_asked: float) -> float:
        with self._lock:
            watched = [(ref, t) for ref, t in self._tracked.items() if not t.done.is_set()]
        waiting = []
        for ref, tracked in watched:
            record = read_exit_record(Path(tracked.log_dir))
            if record is not None:
                tracked.status = record[0]
                tracked.done.set()
            else:
                waiting.append((ref, tracked))
        now = time.monotonic()
        if not waiting or now - last_asked < _SQUEUE_INTERVAL:
            return last_asked
        states = self._states_for([ref for ref, _ in waiting], max_age=_SQUEUE_INTERVAL / 2)
        if states is None:
            return now  # SLURM did not answer: nothing is known to be lost
        for ref, tracked in waiting:
            state = states.get(ref, ("", ""))[0]
            if state and state not in _ENDED:
                tracked.gone_since = None
            elif tracked.gone_since is None:
                tracked.gone_since = now
            elif now - tracked.gone_since >= (_LOST_GRACE if tracked.signalled is None else _CANCELLED_GRACE):
                record = read_exit_record(Path(tracked.log_dir))
                if record is None:
                    how = f"ended {state}" if state else "is no longer known to squeue"
                    note = f"batchrun: SLURM job {ref} {how} without an exit record; SLURM's output: {self.slurm_dir}/{ref.split('_')[0]}.out\n"
                    _append_line(Path(tracked.log_dir) / "err.log", note)
                if record is not None:
                    tracked.status = record[0]
                else:
                    # Killed by the signal batchrun sent, as the local executor reports it.
                    tracked.status = -tracked.signalled if tracked.signalled else _LOST_STATUS
                tracked.done.set()
        return now

    def _states_for(self, refs: Iterable[str], max_age: float) -> dict[str, tuple[str, str]] | None:
        """squeue's (state, command) of `refs`, at most `max_age` seconds old; None if SLURM did not answer.

        One squeue call covers the arrays asked about and every array watched,
        so the monitor, the stopper and adoption share one call a second.
        """
        refs = [ref for ref in refs if _REF.match(ref)]
        with self._squeue_lock:
            now = time.monotonic()
            with self._lock:
                arrays = {ref.split("_")[0] for ref in [*refs, *self._tracked]}
            stale = {array for array in arrays if now - self._asked.get(array, -1e9) > max_age}
            if stale:
                args = ["squeue", "-h", "-r", "-t", "all", "-o", "%i %T %o", "-j", ",".join(sorted(stale)), *self._clusters]
                try:
                    answer = self._run(args)
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

    # -- stopping -----------------------------------------------------------

    def signal(self, job_id: str, ref: str | None, sig: int) -> bool:
        if ref is not None and ref.isdigit():
            return kill_group(int(ref), job_id, sig)  # a local job an earlier launch left
        ref = self._resolve(job_id, ref)
        if ref is None:
            return False
        with self._cond:
            tracked = self._tracked.get(ref)
            if (tracked is not None and tracked.done.is_set()) or self._states.get(ref, ("",))[0] in _ENDED:
                return False
            if tracked is not None:
                tracked.signalled = sig
            self._signals.append((ref, sig))
            self._cond.notify_all()
        if not self._threads:
            self._flush_signals()
        return True

    def _signal_loop(self) -> None:
        while True:
            with self._cond:
                while not self._signals and not self._closed.is_set():
                    self._cond.wait()
                if not self._signals:
                    return
            time.sleep(_SIGNAL_WINDOW)
            try:
                self._flush_signals()
            except Exception:  # noqa: BLE001 - go on stopping jobs after a bug
                log.exception("scancel round failed")

    def _flush_signals(self) -> None:
        """scancel what was asked: a signal reaches running tasks; TERM and KILL also cancel queued ones."""
        with self._cond:
            signals, self._signals = self._signals, []
        states = self._states_for([ref for ref, _ in signals], max_age=0.2) or {}
        by_name: dict[str, list[str]] = {}
        cancel: list[str] = []
        for ref, sig in signals:
            state = states.get(ref, ("PENDING", ""))[0]
            running = state not in _ENDED and state != "PENDING"
            if running:
                # --full: the batch script and its children, not just job steps.
                by_name.setdefault(signal.Signals(sig).name[3:], []).append(ref)
            if sig == signal.SIGKILL or (sig == signal.SIGTERM and not running):
                # A signal sent to a queued task fails its queued siblings
                # too; plain scancel removes just that task.
                cancel.append(ref)
        for name, refs in by_name.items():
            self._scancel(["--signal", name, "--full"], refs)
        self._scancel([], cancel)

    def _scancel(self, options: list[str], refs: list[str]) -> None:
        refs = list(dict.fromkeys(refs))
        for first in range(0, len(refs), _SCANCEL_CHUNK):
            try:
                answer = self._run(["scancel", *options, *self._clusters, *refs[first : first + _SCANCEL_CHUNK]])
            except ExecutorError as error:
                log.debug("scancel failed: %s", error)
                continue
            if answer.returncode != 0:
                # Also when some tasks had already ended: harmless.
                log.debug("scancel: %s", answer.stderr.strip())

    def alive(self, job_id: str, ref: str | None) -> bool:
        if ref is not None and ref.isdigit():
            return group_alive(int(ref))  # a local job an earlier launch left
        ref = self._resolve(job_id, ref)
        if ref is None:
            return False
        # Asked every few ms while a job is being stopped: fresh, but shared.
        states = self._states_for([ref], max_age=_ALIVE_MAX_AGE)
        if states is None:
            return True  # SLURM did not answer: assume it still runs
        return ref in states and states[ref][0] not in _ENDED

    # -- adopting -----------------------------------------------------------

    def still_running(self, job_id: str, ref: str | None, log_dir: str) -> bool:
        resolved = None if ref is not None and ref.isdigit() else self._resolve(job_id, ref)
        if resolved is None:
            return job_lock_held(Path(log_dir))  # a local job an earlier launch left?
        tasks = self._squeue_user(all_states=True, max_age=2 * _SQUEUE_INTERVAL)
        if tasks is None:
            raise ExecutorError(f"cannot tell whether SLURM job {resolved} (job {job_id}) still runs: squeue does not answer")
        state, command = tasks.get(resolved, ("", ""))
        # The command guards against a job id SLURM reused after its state was wiped.
        return bool(state) and state not in _ENDED and TASK_SCRIPT_NAME in command

    def wait_adopted(self, job_id: str, ref: str | None, log_dir: str, should_stop: Callable[[], bool]) -> None:
        resolved = None if ref is not None and ref.isdigit() else self._resolve(job_id, ref)
        if resolved is None:
            wait_for_job_lock(Path(log_dir), should_stop)
            return
        with self._lock:
            tracked = self._tracked.setdefault(resolved, _Tracked(log_dir))
        while not tracked.done.wait(0.2) and not should_stop():
            pass
        self._untrack(resolved, tracked)

    def _resolve(self, job_id: str, ref: str | None) -> str | None:
        """The job's array task: `ref`, or, when the journal has none, the one its newest manifest line went to."""
        if ref is not None:
            return ref if _REF.match(ref) else None
        with self._lock:
            if job_id in self._resolved:
                return self._resolved[job_id]
            index = self._manifest_index
        if index is None:
            index = {}
            with contextlib.suppress(OSError):
                # Newest first: a job's last submission is the one that counts.
                for manifest in sorted(self.slurm_dir.glob("*.manifest"), key=lambda path: path.stat().st_mtime_ns, reverse=True):
                    for task, line in enumerate(manifest.read_bytes().split(b"\n")):
                        if line.startswith(b": "):
                            index.setdefault(line[2 : line.find(b";")].decode("ascii", "replace"), (manifest.name, task))
        found = None
        if job_id in index:
            name, task = index[job_id]
            try:
                submitted = (self.slurm_dir / SUBMITTED_NAME).read_text(errors="replace").splitlines()
            except OSError:
                submitted = []
            arrays = [line.split(" ")[1] for line in submitted if line.startswith(f"{name} ")]
            array_id = arrays[-1] if arrays else self._find_array(self.slurm_dir / name, max_age=2 * _SQUEUE_INTERVAL)
            found = f"{array_id}_{task}" if array_id else None
        with self._lock:
            self._manifest_index = index
            self._resolved[job_id] = found
        return found

    def _find_array(self, manifest: Path, max_age: float = 0.0) -> str | None:
        """The job id of the array submitted with this manifest, from the commands squeue shows."""
        for ref, (_, command) in (self._squeue_user(all_states=True, max_age=max_age) or {}).items():
            if command.endswith(f" {manifest}"):
                return ref.split("_")[0]
        return None


def _prepare_log_dir(log_dir: str) -> None:
    """Create the log directory (SLURM fails a task whose output directory is missing); drop an old exit record.

    Raises:
        OSError: as the local executor's `spawn_job` does, for the launch to report.
    """
    os.makedirs(log_dir, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{log_dir}/{EXIT_NAME}")


def _append_line(path: Path, line: str) -> None:
    """Append one line with one write; only an aid, so failures are ignored."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
