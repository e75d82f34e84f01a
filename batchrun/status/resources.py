"""What a target's jobs used, summarised: percentiles of peak memory, runtime and CPU, and a request that fits them.

Read from the records (each attempt's `max_rss_kb`, `user_cpu_s`,
`sys_cpu_s` and runtime, see `executors.supervisor.record_usage`), so it
costs no sampling and works for any executor. The hint is what to ask a
cluster for next time: the 95th percentile with headroom, in SLURM's terms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from batchrun.store.records import JobRecord, State

__all__ = ["COUNTED", "HEADROOM", "Resources", "percentile", "summarise"]

# The hint asks for this much more than the 95th percentile: a rerun varies.
HEADROOM = 1.25
# The jobs whose usage counts: those that ran to an end (a killed or interrupted run stopped early).
COUNTED = (State.SUCCEEDED, State.FAILED, State.TIMEOUT)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted `values`, by linear interpolation (numpy's default)."""
    if not values:
        raise ValueError("no values")
    rank = (len(values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(frozen=True)
class Resources:
    """Percentiles (p50, p95, max) of what the counted jobs used; None where no job says."""

    jobs: int  # jobs that ran to an end
    measured: int  # of them, those whose usage was recorded
    memory_mb: tuple[float, float, float] | None
    runtime_s: tuple[float, float, float] | None
    cpu_s: tuple[float, float, float] | None  # user + system
    gpu_mb: tuple[float, float, float] | None = None  # peak GPU memory, where known

    def sbatch_hint(self) -> str | None:
        """`--mem=...M --time=H:MM:SS`: the 95th percentiles with `HEADROOM`, rounded up (memory to 64 MB, time to a minute)."""
        parts = []
        if self.memory_mb is not None:
            parts.append(f"--mem={max(64, math.ceil(self.memory_mb[1] * HEADROOM / 64) * 64)}M")
        if self.runtime_s is not None:
            minutes = max(1, math.ceil(self.runtime_s[1] * HEADROOM / 60))
            parts.append(f"--time={minutes // 60}:{minutes % 60:02d}:00")
        return " ".join(parts) or None

    def as_dict(self) -> dict[str, object]:
        def three(values: tuple[float, float, float] | None) -> dict[str, float] | None:
            return None if values is None else {"p50": values[0], "p95": values[1], "max": values[2]}

        return {
            "jobs": self.jobs, "measured": self.measured, "memory_mb": three(self.memory_mb), "runtime_s": three(self.runtime_s),
            "cpu_s": three(self.cpu_s), "gpu_mb": three(self.gpu_mb), "sbatch_args": self.sbatch_hint(),
        }


def _three(values: list[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    values.sort()
    return percentile(values, 50), percentile(values, 95), values[-1]


def summarise(records: Iterable[JobRecord | None]) -> Resources:
    """Summarise the records (`JobRecord`s, or None for a job never run) of a target's jobs; those not in `COUNTED` are left out."""
    memory: list[float] = []
    runtime: list[float] = []
    cpu: list[float] = []
    gpu: list[float] = []
    jobs = 0
    for rec in records:
        if rec is None or rec.state not in COUNTED:
            continue
        jobs += 1
        if rec.runtime is not None:
            runtime.append(rec.runtime)
        if rec.max_rss_kb is not None:
            memory.append(rec.max_rss_kb / 1024)
            cpu.append((rec.user_cpu_s or 0.0) + (rec.sys_cpu_s or 0.0))
        if rec.max_gpu_mem_mb is not None:
            gpu.append(float(rec.max_gpu_mem_mb))
    return Resources(jobs, len(memory), _three(memory), _three(runtime), _three(cpu), _three(gpu))
