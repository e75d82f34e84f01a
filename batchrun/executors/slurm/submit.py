"""Submitting jobs to SLURM, and the files under `<runs_dir>/slurm/` that record what was submitted.

Jobs that start together go to SLURM together: the submitter thread sends
every job queued within a short window (or as soon as every free slot asked)
as one `sbatch --array=0-K%N` per distinct request (jobs asking for the same
GPUs, CPUs, memory and time share an array, which carries `--gres`,
`--cpus-per-task`, `--mem` and `--time` for all its tasks; `--time` is the
launch's --timeout for jobs whose request names no time, and
--checkpoint-signal is every array's `--signal`). Before submitting it writes a manifest (line
K+1 holds task K's job id, environment and command) and, after, a line in
the `submitted` log; a later launch reads both back to find jobs the journal
has no reference for, and skips whatever in them is damaged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from batchrun.atomic import write_atomic
from batchrun.errors import ExecutorError
from batchrun.executors.base import ExecutorOptions
from batchrun.executors.jobfiles import log_dir_of, read_exit_record
from batchrun.executors.slurm.commands import SlurmCommands
from batchrun.executors.slurm.settings import SlurmSettings
from batchrun.executors.slurm.text import (
    SUBMITTED_NAME,
    TASK_SCRIPT_NAME,
    last_line,
    manifest_job_id,
    manifest_line,
    parse_submitted,
    request_args,
    signal_args,
    task_script,
)
from batchrun.executors.supervisor import clear_job_files
from batchrun.resources import Request

__all__ = [
    "Submission",
    "Submitter",
    "append_line",
    "index_manifests",
    "prepare_log_dir",
    "remove_spent",
    "submitted_arrays",
    "write_task_script",
]

log = logging.getLogger(__name__)

# How long the submitter waits for more jobs to join one sbatch.
_COLLECT_WINDOW = 0.03
# Tasks per array when `scontrol show config` does not say (SLURM's default MaxArraySize is 1001).
DEFAULT_MAX_ARRAY = 1000


@dataclass
class Submission:
    """A job waiting to be submitted, then its reference or the error."""

    job_id: str
    command: str
    log_dir: str
    env: dict[str, str]
    request: Request | None = None  # what it asks SLURM for (`batchrun.resources`)
    done: threading.Event = field(default_factory=threading.Event)
    ref: str | None = None
    error: ExecutorError | None = None


class Submitter:
    """Queued jobs -> sbatch job arrays. Shares the executor's condition, which guards its queue and counts."""

    def __init__(
        self,
        options: ExecutorOptions,
        commands: SlurmCommands,
        slurm_dir: Path,
        env: dict[str, str],
        cond: threading.Condition,
        closed: threading.Event,
        register: Callable[[str, str, bool], None],
        settings: SlurmSettings | None = None,
    ) -> None:
        self._options = options
        # The user's extra sbatch options, the launch's --timeout and --checkpoint-signal.
        self._settings = settings if settings is not None else SlurmSettings()
        self._sbatch_args = list(self._settings.sbatch_args)
        self._commands = commands
        self._slurm_dir = slurm_dir
        # sbatch hands this environment to the tasks; manifests add what jobs need on top.
        self._env = env
        self._cond = cond
        self._closed = closed
        # Called under the condition with (ref, log dir, tracked) for each task submitted.
        self._register = register
        self.max_array = DEFAULT_MAX_ARRAY
        self.queue: list[Submission] = []
        # Tasks submitted by start() that nobody has finished waiting for: they count against -j.
        self.outstanding = 0
        self._recent: deque[str] = deque(maxlen=options.n_jobs)
        self._batches = 0

    def loop(self) -> None:
        """The submitter thread: send queued jobs in batches until the executor closes."""
        n_jobs = self._options.n_jobs
        while True:
            with self._cond:
                while not self.queue and not self._closed.is_set():
                    self._cond.wait()
                if not self.queue:
                    return
                # Gather until every free slot asked (workers start together
                # after a round of jobs ended) or the window closes.
                deadline = time.monotonic() + _COLLECT_WINDOW
                while len(self.queue) < n_jobs - self.outstanding and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch, self.queue = self.queue, []
                # -j jobs already out and nobody waiting: one thread starts
                # everything (--detach). Each job then waits for the one
                # submitted -j jobs before it, so -j still holds.
                after = self._recent[0] if self.outstanding >= n_jobs and len(self._recent) == n_jobs else None
            try:
                self.submit(batch, after=after)
            except Exception as error:  # noqa: BLE001 - a bug must not leave the workers waiting forever
                if not isinstance(error, ExecutorError):
                    log.exception("SLURM submission failed")
                    error = ExecutorError(f"SLURM submission failed: {type(error).__name__}: {error}")
                for request in batch:
                    request.error = error
            finally:
                for request in batch:
                    request.done.set()

    def submit(self, requests: list[Submission], after: str | None = None, chain: bool = False, track: bool = True) -> None:
        """sbatch `requests` as arrays of at most MaxArraySize tasks, one array (or more) per distinct request, and set their refs."""
        groups: dict[tuple[str, ...], list[Submission]] = {}
        for submission in requests:
            groups.setdefault(tuple(request_args(submission.request, self._settings.timeout)), []).append(submission)
        for group_args, group in groups.items():
            after = self._submit_group(group, list(group_args), after, chain, track)

    def _submit_group(self, requests: list[Submission], request_sbatch: list[str], after: str | None, chain: bool, track: bool) -> str | None:
        """Submit jobs asking alike; the `after` for the next group (its last array when chained)."""
        for first in range(0, len(requests), self.max_array):
            chunk = requests[first : first + self.max_array]
            with self._cond:
                self._batches += 1
                manifest = self._slurm_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._batches:05d}.manifest"
            text = "".join(manifest_line(r.job_id, r.command, r.env, self._env) for r in chunk)
            try:
                manifest.write_bytes(text.encode("utf-8", "surrogateescape"))
            except OSError as err:
                raise ExecutorError(f"{manifest}: cannot write the SLURM manifest: {err.strerror}") from err
            args = ["sbatch", "--parsable", f"--array=0-{len(chunk) - 1}%{min(self._options.n_jobs, len(chunk))}"]
            args += [f"--job-name=batchrun-{Path(self._options.runs_dir).name}", f"--output={self._slurm_dir}/%A.out", "--open-mode=append"]
            args += [f"--dependency=afterany:{after}"] if after is not None else []
            # Requeueable (scontrol requeue, PreemptMode=REQUEUE, a node failure): SLURM runs a task again
            # under its same id, so batchrun waits on and records one job, never two at once.
            args += [] if any(arg.startswith("--no-requeue") for arg in self._sbatch_args) else ["--requeue"]
            # The job's own request and time limit, and the checkpoint signal, after --sbatch-args: batchrun's
            # options and a line's directive are more specific than the launch's sbatch defaults.
            asks = [*request_sbatch, *signal_args(self._settings.checkpoint_signal)]
            array_id = self._sbatch([*args, *self._sbatch_args, *asks, str(self._slurm_dir / TASK_SCRIPT_NAME), str(manifest)], manifest)
            append_line(self._slurm_dir / SUBMITTED_NAME, f"{manifest.name} {array_id} {len(chunk)}\n")
            with self._cond:
                for task, request in enumerate(chunk):
                    request.ref = ref = f"{array_id}_{task}"
                    self._recent.append(ref)
                    if track:
                        self.outstanding += 1
                    self._register(ref, request.log_dir, track)
            if chain:
                after = array_id
        return after

    def _sbatch(self, args: list[str], manifest: Path) -> str:
        """Submit; the array's job id."""
        try:
            answer = self._commands.run(args)
        except ExecutorError as error:
            failure = error
        else:
            # --parsable prints "ID", or "ID;CLUSTER" on a multi-cluster set-up.
            array_id = last_line(answer.stdout).split(";")[0]
            if answer.returncode == 0 and array_id.isascii() and array_id.isdigit():
                return array_id
            failure = ExecutorError(f"sbatch failed: {last_line(answer.stderr or answer.stdout)}")
        # A timed-out or garbled sbatch may still have submitted: never twice.
        found = self._commands.find_array(manifest)
        if found is not None:
            return found
        raise failure


def prepare_log_dir(log_dir: str) -> None:
    """Create the log directory (SLURM fails a task whose output directory is missing); drop an old exit record and stop note.

    The task's supervisor starts later, so it leaves them be.

    Raises:
        OSError: as a local job's start does, for the launch to report.
    """
    os.makedirs(log_dir, exist_ok=True)
    clear_job_files(log_dir)


def append_line(path: Path, line: str) -> None:
    """Append one line with one write; only an aid, so failures are ignored."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, line.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)


def write_task_script(slurm_dir: Path, cwd: str, forward: int | None = None, launch: str | None = None) -> None:
    """Write the script every array task runs, unless it is there already (byte for byte); `forward`: the checkpoint signal.

    sbatch keeps a copy of the script it submits, so tasks queued by an
    earlier launch run the script they were submitted with.

    Raises:
        OSError: the directory or the script cannot be written.
    """
    slurm_dir.mkdir(parents=True, exist_ok=True)
    script = slurm_dir / TASK_SCRIPT_NAME
    data = task_script(cwd, forward, launch=launch).encode("utf-8", "surrogateescape")
    try:
        same = script.read_bytes() == data
    except FileNotFoundError:
        same = False
    if not same:
        # Replaced, not rewritten: sbatch may be reading the old one (a damaged one is replaced too).
        write_atomic(script, data, mode=0o755)


def remove_spent(slurm_dir: Path, active: Callable[[], dict[str, tuple[str, str]] | None], patience: float = 0.0) -> None:
    """Remove manifests no queued or running task will read, and empty SLURM output files.

    `active` gives squeue's queued and running tasks (None: SLURM did not answer, remove nothing).
    `patience`: a task whose job's exit record is written has only its script's end left, yet
    squeue may show it running for a moment more (a launch that just saw its last jobs end
    often finds them so); for up to this many seconds, ask again until SLURM lets go of them.
    """
    try:
        files = [path for path in slurm_dir.iterdir() if path.suffix in (".manifest", ".out")]
    except OSError:
        return
    tasks = active() if files else None
    deadline = time.monotonic() + patience
    read: dict[Path, tuple[list[bytes], float] | None] = {}  # each manifest read once, however often squeue is asked
    while tasks is not None and time.monotonic() < deadline and any(_ending(slurm_dir, read, ref, state, command) for ref, (state, command) in tasks.items()):
        time.sleep(0.1)
        tasks = active()
    if tasks is None:
        return
    # A completing task's script has ended: it reads its manifest no more.
    commands = [command for state, command in tasks.values() if state != "COMPLETING"]
    outputs = {slurm_dir / f"{ref.split('_')[0]}.out" for ref in tasks}
    for path in files:
        in_use = path in outputs or any(command.endswith(f" {path}") for command in commands)
        with contextlib.suppress(OSError):
            if not in_use and (path.suffix == ".manifest" or path.stat().st_size == 0):
                path.unlink()


def _ending(slurm_dir: Path, read: dict[Path, tuple[list[bytes], float] | None], ref: str, state: str, command: str) -> bool:
    """Whether squeue shows this runs directory's task ending: completing (its script ended, SLURM cleaning up), or running although its job's exit record is written (newer than its manifest, `read` holds those read)."""
    if state not in ("RUNNING", "COMPLETING") or "_" not in ref or not command.endswith(".manifest"):
        return False
    manifest = Path(command.rsplit(" ", 1)[-1])
    if manifest.parent != slurm_dir:
        return False  # another runs directory's task: its jobs are not this one's
    if state == "COMPLETING":
        return True  # gone from squeue in a moment, and its empty output file with it
    if manifest not in read:
        try:
            read[manifest] = (manifest.read_bytes().split(b"\n"), manifest.stat().st_mtime)
        except OSError:
            read[manifest] = None
    if (known := read[manifest]) is None:
        return False
    lines, since = known
    try:
        job_id = manifest_job_id(lines[int(ref.split("_")[1])])
    except (ValueError, IndexError):
        return False
    found = None if job_id is None else read_exit_record(log_dir_of(slurm_dir.parent, job_id))
    return found is not None and found[1] >= since


def index_manifests(slurm_dir: Path) -> dict[str, tuple[str, int]]:
    """job id -> (manifest name, task) of its newest submission, from the manifests on disk.

    Read back after a crash: lines that name no job (damaged, truncated) are skipped.
    """
    index: dict[str, tuple[str, int]] = {}
    with contextlib.suppress(OSError):
        # Newest first: a job's last submission is the one that counts.
        for manifest in sorted(slurm_dir.glob("*.manifest"), key=lambda path: path.stat().st_mtime_ns, reverse=True):
            for task, line in enumerate(manifest.read_bytes().split(b"\n")):
                job_id = manifest_job_id(line)
                if job_id is not None:
                    index.setdefault(job_id, (manifest.name, task))
    return index


def submitted_arrays(slurm_dir: Path, manifest_name: str) -> list[str]:
    """The array ids the `submitted` log gives for one manifest, oldest first."""
    try:
        data = (slurm_dir / SUBMITTED_NAME).read_bytes()
    except OSError:
        return []
    return parse_submitted(data, manifest_name)
