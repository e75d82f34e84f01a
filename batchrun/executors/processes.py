"""A job's processes on this host: signalling its process group, and finding its processes by their environment.

Every supervisor starts a job's shell as the leader of a session and process
group of its own (`supervisor`), and every job's environment names its job
id and log directory (BATCHRUN_JOB_ID, BATCHRUN_LOG_DIR). Executors that run
jobs on this host (the local one; the Dask workers, each on its own; SLURM
for local jobs an earlier launch left) stop and look for them through these.
"""

from __future__ import annotations

import os

__all__ = ["find_job_processes", "group_alive", "job_processes", "kill_group", "reap_strays"]


def kill_group(pid: int, job_id: str, sig: int) -> bool:
    """Send `sig` to the process group led by `pid`; False if it is gone.

    A group is only signalled while its leader still belongs to the job
    (its environment names the job id), or has exited leaving members: a
    recorded pid may have been reused by an unrelated process since.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except FileNotFoundError:
        env = None
    except OSError:
        env = b""
    if env is not None and env and f"BATCHRUN_JOB_ID={job_id}".encode() not in env.split(b"\0"):
        return False
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pid: int) -> bool:
    """True while any live (non-zombie) process is in the process group `pid`."""
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # killpg succeeds for zombies too; look for a member that is not one.
    try:
        pids = _proc_pids()
    except OSError:
        return True
    for other in pids:
        fields = _stat_fields(other)
        if fields is not None and len(fields) > 2 and int(fields[2]) == pid and fields[0] != b"Z":
            return True
    return False


def reap_strays(session: int) -> None:
    """Reap the zombies among this process's children in `session`: the strays of a job adopted as a subreaper.

    Best effort, for a launch whose slot helper died: strays that end later
    stay zombies until it exits (they hold no lock and count as no process).
    """
    me = os.getpid()
    try:
        pids = _proc_pids()
    except OSError:
        return
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None and len(fields) > 3 and fields[0] == b"Z" and int(fields[1]) == me and int(fields[3]) == session:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _proc_pids() -> list[int]:
    """Every pid in /proc (raises OSError where /proc cannot be listed)."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()


def job_processes(job_id: str, log_dir: str | None = None) -> list[tuple[int, int]]:
    """(pid, process group) of the live processes of this host whose environment names the job.

    With `log_dir`, the environment must name that log directory too (a
    Dask worker may see two runs directories with the same job id).
    """
    wanted = {f"BATCHRUN_JOB_ID={job_id}".encode()}
    if log_dir is not None:
        wanted.add(f"BATCHRUN_LOG_DIR={log_dir}".encode())
    try:
        pids = _proc_pids()
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if not wanted.issubset(env.split(b"\0")):
            continue
        fields = _stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            found.append((pid, int(fields[2])))
    return found


def find_job_processes(job_id: str) -> list[int]:
    """Pids of live processes whose environment names this job id.

    Used only when a launch died between starting a job and recording its
    pid, to stop an adopted job whose process group is otherwise unknown.
    """
    return [pid for pid, _ in job_processes(job_id)]
