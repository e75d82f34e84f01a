"""Ask the cluster whether jobs left by `--detach` still run, from their journal references alone.

The SLURM executor keeps its own, richer bookkeeping while it runs a launch;
`wait` and `status` (through `SlurmExecutor.unwatched_alive`) only need "is
this array task still queued or running", answered by one `squeue` call.

This module never prints.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable

from batchrun.executors.slurm.text import ENDED, is_slurm_ref

__all__ = ["is_slurm_ref", "slurm_active"]

# SLURM client commands get this long; a dead controller fails them in about 10 s.
_SQUEUE_TIMEOUT = 60.0


def slurm_active(refs: Iterable[str], run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> set[str] | None:
    """Which of these SLURM array tasks (`ARRAYID_TASK`) squeue shows queued or running; None if it did not answer.

    One squeue call for all their arrays. A cluster other than the default
    is named the way squeue reads it, with SLURM_CLUSTERS in the environment.
    """
    refs = [ref for ref in refs if is_slurm_ref(ref)]
    if not refs:
        return set()
    arrays = sorted({ref.split("_")[0] for ref in refs}, key=int)
    try:
        answer = run(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(arrays)], capture_output=True, text=True, timeout=_SQUEUE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if answer.returncode != 0:
        # Every array purged (they ended a while ago): "Invalid job id specified".
        return set() if "invalid job id" in answer.stderr.lower() else None
    active = set()
    for line in answer.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] not in ENDED:
            active.add(parts[0])
    return active & set(refs)
