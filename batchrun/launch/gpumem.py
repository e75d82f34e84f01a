"""Peak GPU memory of each running job, where `nvidia-smi` can tell: sampled while jobs run (only with --gpus).

A process's GPU memory is not in its rusage, so it is sampled: every few
seconds, `nvidia-smi --query-compute-apps=pid,used_memory` lists the
processes using a GPU, and each is put down to the job whose session it is
in (a local job's shell leads its own session: its pid is the job's
reference). A job shorter than one interval may show none. NVML would
answer the same; nvidia-smi needs no Python package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable

from batchrun.launch.gpus import APPS_QUERY, parse_compute_apps

__all__ = ["GpuMemory", "sample_gpu_memory"]

_INTERVAL = 2.0
_TIMEOUT = 10.0


class GpuMemory:
    """The highest GPU memory seen of each job while it ran (MiB, summed over its processes in one sample)."""

    def __init__(self, jobs_by_session: Callable[[], dict[int, str]], program: str = "nvidia-smi", interval: float = _INTERVAL) -> None:
        self._jobs_by_session = jobs_by_session  # session id -> job id, of the jobs running now
        self._program = shutil.which(program)
        self._interval = interval
        self._peak: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._program is not None

    def start(self) -> None:
        """Sample in a background thread until `close` (nothing when nvidia-smi is not on PATH)."""
        if self._program is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="batchrun-gpumem", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        """One query: each job's memory now, kept where it beats the job's peak."""
        if self._program is None:
            return
        try:
            done = subprocess.run([self._program, *APPS_QUERY], capture_output=True, text=True, timeout=_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return
        if done.returncode != 0:
            return
        sessions = self._jobs_by_session()
        now: dict[str, int] = {}
        for _gpu, pid, mib in parse_compute_apps(done.stdout):
            if mib is None:
                continue  # the driver would not say: not known, rather than 0
            try:
                job_id = sessions.get(os.getsid(pid))
            except OSError:
                continue  # ended since
            if job_id is not None:
                now[job_id] = now.get(job_id, 0) + mib
        with self._lock:
            for job_id, mib in now.items():
                if mib > self._peak.get(job_id, -1):
                    self._peak[job_id] = mib

    def take(self, job_id: str) -> int | None:
        """The job's peak so far (MiB), forgotten here; None if no sample saw it."""
        with self._lock:
            return self._peak.pop(job_id, None)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_TIMEOUT + 1)
            self._thread = None


def sample_gpu_memory(running: dict[str, str | None], lock: threading.RLock) -> GpuMemory | None:
    """Start sampling the GPU memory of the local jobs in `running` (job id -> pid), read under `lock`; None without nvidia-smi.

    A local job's shell leads its session, and its pid (the job's reference) is that session's id.
    """

    def jobs_by_session() -> dict[int, str]:
        with lock:
            return {int(ref): job_id for job_id, ref in running.items() if ref is not None and ref.isdigit()}

    memory = GpuMemory(jobs_by_session)
    if not memory.available:
        return None
    memory.start()
    return memory
