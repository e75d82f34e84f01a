"""What a target's jobs used, summarised: percentiles of peak memory, runtime and CPU, and a request that fits them.

Read from the records (each attempt's `max_rss_kb`, `user_cpu_s`,
`sys_cpu_s` and runtime, see `executors.supervisor.record_usage`), so it
costs no sampling and works for any executor. The hint is what to ask a
cluster for next time: the 95th percentile with headroom, in SLURM's terms.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from batchrun.store.records import JobRecord, State

__all__ = ["COUNTED", "HEADROOM", "Resources", "percentile", "summarise"]

# The hint asks for this much more than the 95th percentile: a rerun varies.
HEADROOM = 1.25
# Values sorted at a time (`_ranked`).
_CHUNK = 1 << 16
# The jobs whose usage counts: those that ran to an end (a killed or interrupted run stopped early).
COUNTED = (State.SUCCEEDED, State.FAILED, State.TIMEOUT)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted `values`, by linear interpolation (numpy's default)."""
    if not values:
        raise ValueError("no values")
    return _interpolate(values.__getitem__, len(values), q)


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


class _Sorted:
    """Values kept as sorted chunks of `_CHUNK` (8 bytes a value), for percentiles: a million values are
    never a million float objects at once (32 MB), nor an array and a sorted copy of it."""

    def __init__(self) -> None:
        self.chunks: list[array[float]] = []
        self.buffer: list[float] = []
        self.count = 0

    def add(self, value: float) -> None:
        self.buffer.append(value)
        self.count += 1
        if len(self.buffer) >= _CHUNK:
            self.chunks.append(array("d", sorted(self.buffer)))
            self.buffer.clear()

    def three(self) -> tuple[float, float, float] | None:
        """p50, p95 and max, as `percentile` of them all sorted gives them."""
        n = self.count
        if not n:
            return None
        if self.buffer:
            self.chunks.append(array("d", sorted(self.buffer)))
            self.buffer.clear()
        ranked = self._ranked({*_ranks(n, 50), *_ranks(n, 95), n - 1})
        return _interpolate(ranked.__getitem__, n, 50), _interpolate(ranked.__getitem__, n, 95), ranked[n - 1]

    def _ranked(self, wanted: set[int]) -> dict[int, float]:
        """The values at these positions of them all sorted: the chunks merged."""
        last, found = max(wanted), {}
        for position, value in enumerate(heapq.merge(*self.chunks)):  # stable: equal values in the order a whole sort keeps
            if position in wanted:
                found[position] = value
            if position >= last:
                break
        return found


def _ranks(n: int, q: float) -> tuple[int, int]:
    """The two positions of n sorted values `percentile` reads for q."""
    low = math.floor((n - 1) * q / 100)
    return low, min(low + 1, n - 1)


def _interpolate(at: Callable[[int], float], n: int, q: float) -> float:
    """The q-th percentile of n sorted values, `at(position)` each: between the two at `_ranks`, linearly."""
    low, high = _ranks(n, q)
    return at(low) + (at(high) - at(low)) * ((n - 1) * q / 100 - low)


def summarise(records: Callable[[], Iterable[JobRecord | None]]) -> Resources:
    """Summarise the records (`JobRecord`s, or None for a job never run) of a target's jobs; those not in `COUNTED` are left out.

    `records` gives them again for each measure: one measure's values are
    held at a time (8 MB at a million jobs), not four.
    """
    jobs = 0
    runtime = _Sorted()
    measured = gpus = False
    for rec in _counted(records()):
        jobs += 1
        if rec.runtime is not None:
            runtime.add(rec.runtime)
        measured = measured or rec.max_rss_kb is not None
        gpus = gpus or rec.max_gpu_mem_mb is not None
    runtime_s = runtime.three()
    del runtime
    memory = _values(records, lambda rec: None if rec.max_rss_kb is None else rec.max_rss_kb / 1024) if measured else _Sorted()
    memory_mb, count = memory.three(), memory.count
    del memory
    cpu_s = _values(records, lambda rec: None if rec.max_rss_kb is None else (rec.user_cpu_s or 0.0) + (rec.sys_cpu_s or 0.0)).three() if measured else None
    gpu_mb = _values(records, lambda rec: None if rec.max_gpu_mem_mb is None else float(rec.max_gpu_mem_mb)).three() if gpus else None
    return Resources(jobs, count, memory_mb, runtime_s, cpu_s, gpu_mb)


def _counted(records: Iterable[JobRecord | None]) -> Iterator[JobRecord]:
    return (rec for rec in records if rec is not None and rec.state in COUNTED)


def _values(records: Callable[[], Iterable[JobRecord | None]], value: Callable[[JobRecord], float | None]) -> _Sorted:
    """One measure of every counted record that has it."""
    values = _Sorted()
    for rec in _counted(records()):
        found = value(rec)
        if found is not None:
            values.add(found)
    return values
