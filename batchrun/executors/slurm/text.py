"""The text SLURM and batchrun exchange: references, manifest lines, the task script, squeue's answers.

Pure functions, no processes and no files: the executor (`slurm.py`) and its
helpers build on them, and tests check them alone.
"""

from __future__ import annotations

import math
import re
import shlex
import signal
import sys
from pathlib import Path

from batchrun.executors.supervisor import COMMAND_FILE
from batchrun.resources import Request, time_limit

__all__ = [
    "ENDED",
    "SUBMITTED_NAME",
    "TASK_SCRIPT_NAME",
    "cluster_option",
    "is_slurm_ref",
    "last_line",
    "manifest_job_id",
    "manifest_line",
    "parse_squeue",
    "parse_submitted",
    "refused_sbatch_args",
    "request_args",
    "shell_quote",
    "signal_args",
    "task_script",
]

TASK_SCRIPT_NAME = "batchrun-task.sh"
# The job supervisor every task runs (from the shared filesystem, as batchrun is installed there).
SUPERVISOR_PATH = str(Path(__file__).resolve().parent.parent / "supervisor.py")
# One line per sbatch, "<manifest name> <array id> <tasks>": finds jobs the journal has no reference for.
SUBMITTED_NAME = "submitted"
# squeue states after which a task runs nothing any more; any other state is queued or running.
ENDED = frozenset(
    {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"}
)
_REF = re.compile(r"^(\d+)_(\d+)$")
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# sbatch options batchrun sets itself.
_RESERVED_SBATCH = ("--array", "-a", "--wrap", "--parsable")
# A job id as batchrun writes it into a manifest line.
_JOB_ID = re.compile(rb"^: ([0-9a-f]{16});")


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


def task_script(cwd: str, forward: int | None = None, python: str = sys.executable, supervisor: str = SUPERVISOR_PATH, launch: str | None = None) -> str:
    """The script every array task runs, with its manifest's path as $1.

    It sets the job's environment from its manifest line and hands the line
    to the job supervisor (`executors/supervisor.py`, run by the Python that
    runs batchrun, at the same path on every node) on its stdin, where a line
    of any length passes. The supervisor runs it exactly as a local job runs
    (`/bin/sh -c LINE` in the launch's directory) and writes its exit record;
    a task that cannot start it leaves no record: the job is lost. The
    supervisor replaces the script's shell (`exec`), so it is the batch shell
    that `--signal=B:SIG` reaches: with `forward` (the checkpoint signal) it
    passes that signal on to the job's process group. Its stdin is therefore
    a file, `command.sh` in the job's log directory: the end of a pipe would
    run it in a child of the batch shell, and the signal would kill the shell.
    With `launch`, the record goes to that launch's exit log (`exitlog`).
    """
    forwarding = f" --forward {_signal_name(forward)}" if forward is not None else ""
    forwarding += f" --launch {shell_quote(launch)}" if launch else ""
    return (
        "#!/bin/sh\n"
        "# batchrun: array task K runs the job on line K+1 of the manifest $1, under batchrun's supervisor.\n"
        "__batchrun_nl='\n'\n"
        '__batchrun_line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1)){p;q;}" "$1") && [ -n "$__batchrun_line" ] || {\n'
        '    echo "batchrun: no line for task $SLURM_ARRAY_TASK_ID in $1" >&2; exit 1; }\n'
        'eval "$__batchrun_line"\n'
        f'printf %s "$__batchrun_cmd" > "$BATCHRUN_LOG_DIR/{COMMAND_FILE}" || exit 1\n'
        f'exec {shell_quote(python)} -I -S {shell_quote(supervisor)} --cwd {shell_quote(cwd)}{forwarding} "$BATCHRUN_LOG_DIR" < "$BATCHRUN_LOG_DIR/{COMMAND_FILE}"\n'
    )


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    """`squeue -h -r -o "%i %T %o"` output -> {ref: (state, command)}, array tasks only."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) >= 2 and _REF.match(parts[0]):
            states[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return states


def cluster_option(sbatch_args: list[str]) -> list[str]:
    """The user's `--clusters` sbatch option, which squeue and scancel then need as well."""
    for i, arg in enumerate(sbatch_args):
        if arg in ("-M", "--clusters") and i + 1 < len(sbatch_args):
            return [f"--clusters={sbatch_args[i + 1]}"]
        if arg.startswith("--clusters="):
            return [arg]
        if arg.startswith("-M") and len(arg) > 2:
            return [f"--clusters={arg[2:]}"]
    return []


def refused_sbatch_args(sbatch_args: list[str]) -> str | None:
    """Why these `--sbatch-args` cannot be used, or None.

    batchrun sets `--array` and the like itself; and a `--signal` for the
    batch shell (`B:`, `RB:`) would kill batchrun's job supervisor, which
    is the batch shell: the checkpoint signal is the way to it.
    """
    for i, arg in enumerate(sbatch_args):
        if arg.split("=", 1)[0] in _RESERVED_SBATCH:
            return f"--sbatch-args must not contain {arg!r}: batchrun submits job arrays itself"
        spec = arg.split("=", 1)[1] if arg.startswith("--signal=") else " ".join(sbatch_args[i + 1 : i + 2]) if arg == "--signal" else ""
        flags, colon, _ = spec.partition(":")
        if colon and "B" in flags.upper():
            return (
                f"--sbatch-args {arg if '=' in arg else f'{arg} {spec}'!r}: that signal would kill the batch shell, batchrun's job supervisor; "
                "pass --checkpoint-signal SIG@SECONDS (with --timeout), which it passes on to the job"
            )
    return None


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else "no message"


def manifest_job_id(line: bytes) -> str | None:
    """The job id a manifest line names; None for anything else (a damaged or truncated line)."""
    match = _JOB_ID.match(line)
    return match.group(1).decode("ascii") if match else None


def parse_submitted(data: bytes, manifest_name: str) -> list[str]:
    """The array ids the `submitted` log gives for one manifest, oldest first.

    The log is only an aid, read back after a crash: lines that are damaged
    (not UTF-8, cut short by a kill, not "NAME ARRAYID TASKS") are skipped.
    """
    arrays = []
    for line in data.split(b"\n"):
        parts = line.decode("utf-8", "replace").split(" ")
        if len(parts) == 3 and parts[0] == manifest_name and parts[1].isdigit() and parts[1].isascii() and parts[2].isdigit():
            arrays.append(parts[1])
    return arrays


def request_args(request: Request | None, timeout: float | None = None) -> list[str]:
    """The sbatch options that ask SLURM for what a job requests (`batchrun.resources`), and for its time limit.

    A fraction of a GPU asks for one whole GPU (`--gres=gpu:1`): SLURM's gres
    hands out whole devices. Memory goes in megabytes, rounded up. The time
    limit is the job's own `time`, else the launch's `--timeout`
    (`resources.time_limit`), rounded up to whole minutes, as SLURM counts
    them (at least one: `--time=0` would be no limit).
    """
    args = []
    if request is not None and request.gpus:
        args.append(f"--gres=gpu:{max(1, math.ceil(request.gpus))}")
    if request is not None and request.cpus:
        args.append(f"--cpus-per-task={request.cpus}")
    if request is not None and request.mem:
        args.append(f"--mem={-(-request.mem // (1 << 20))}M")
    seconds = time_limit(request, timeout)
    if seconds is not None:
        minutes = max(1, math.ceil(seconds / 60))
        args.append(f"--time={minutes // 60}:{minutes % 60:02d}:00")
    return args


def signal_args(checkpoint_signal: tuple[int, float] | None) -> list[str]:
    """`--checkpoint-signal SIG@SECONDS` as sbatch's `--signal=B:SIG@SECONDS` (whole seconds, rounded up).

    `B:` sends it to the batch shell alone, which is the job's supervisor
    (`task_script`): it passes it on to the job's process group. Without
    `B:` SLURM would signal only job steps (`srun`), which a batchrun job
    need not have.
    """
    if checkpoint_signal is None:
        return []
    signum, seconds = checkpoint_signal
    return [f"--signal=B:{_signal_name(signum)}@{math.ceil(seconds)}"]


def _signal_name(signum: int) -> str:
    """`USR1` for SIGUSR1: the name SLURM's `--signal` and the supervisor's `--forward` read."""
    return signal.Signals(signum).name.removeprefix("SIG")
