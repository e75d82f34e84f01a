"""What a compacted journal says: one line per job (and the exit codes of its earlier attempts), and when to rewrite.

A journal grows by a few lines per attempt; `Journal.compact` rewrites it as
the lines a replay needs to give every record back as it is. The lines are
made here, a record at a time, and written a block at a time: a million
jobs' lines held in a list were 400 MB at a relaunch's peak.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from batchrun.store.records import REQUEUE_STATUS, JobRecord, State, start_extras

__all__ = ["blocks", "compacted_lines", "compaction_due"]


def blocks(lines: Iterable[str], counts: list[int]) -> Iterator[str]:
    """`lines` joined 4,096 at a time, counted into `counts` (lines, characters)."""
    while block := list(islice(lines, 4096)):
        text = "".join(block)
        counts[0] += len(block)
        counts[1] += len(text)
        yield text


def compacted_lines(records: Iterable[JobRecord], dropped: list[str]) -> Iterator[str]:
    """The lines of a compacted journal; the ids of records it keeps no line for go to `dropped`."""
    for rec in records:
        lines: list[str] = []
        # Earlier attempts keep their exit codes (their times are not kept).
        if rec.start is not None and rec.end is not None:
            for n, code in enumerate(rec.exit_codes[:-1], start=rec.attempts - len(rec.exit_codes) + 1):
                if code is None or code == REQUEUE_STATUS:
                    # A 75 was (almost always) a requeue: kept as one, so the requeue count survives.
                    unfinished = State.INTERRUPTED if code is None else State.REQUEUED
                    lines.append(f"I {rec.job_id} {n} {rec.start:.6f} {rec.end:.6f} {unfinished}\n")
                else:
                    lines.append(f"E {rec.job_id} {n} {code} {rec.start:.6f} {rec.end:.6f}\n")
        if rec.max_rss_kb is not None and rec.user_cpu_s is not None and rec.sys_cpu_s is not None and rec.state != State.RUNNING:
            gpu = "" if rec.max_gpu_mem_mb is None else f" {rec.max_gpu_mem_mb}"
            lines.append(f"U {rec.job_id} {rec.attempts} {rec.max_rss_kb} {rec.user_cpu_s:.3f} {rec.sys_cpu_s:.3f}{gpu}\n")
        if rec.state in State.FINISHED and rec.start is not None and rec.end is not None and rec.status is not None:
            # The state and host ride along: the S line that held the host goes.
            extra = f" {rec.state} {rec.host}" if rec.host else (f" {rec.state}" if rec.state == State.TIMEOUT else "")
            if rec.code is not None and rec.host:
                extra += f" {rec.code}"
            lines.append(f"E {rec.job_id} {rec.attempts} {rec.status} {rec.start:.6f} {rec.end:.6f}{extra}\n")
        elif rec.state == State.RUNNING and rec.start is not None:
            # Left running on purpose (detached): keep what adoption needs.
            lines.append(f"S {rec.job_id} {rec.attempts} {rec.start:.6f} {rec.slot} {rec.host}{start_extras(rec.holds, rec.code)}\n")
            if rec.ref is not None:
                lines.append(f"P {rec.job_id} {rec.attempts} {rec.ref} 0\n")
        elif rec.start is not None and rec.end is not None:
            lines.append(f"I {rec.job_id} {rec.attempts} {rec.start:.6f} {rec.end:.6f} {rec.state}{'' if rec.code is None else ' ' + rec.code}\n")
        elif not rec.ignored:
            dropped.append(rec.job_id)  # forgotten and not run since: no line, as if never named
        if rec.ignored:
            lines.append(f"X {rec.job_id}\n")
        yield from lines


def compaction_due(lines: int, records: int) -> bool:
    """Whether a journal of this many lines for this many records is due a rewrite (`Journal.compact`)."""
    return lines > 2 * max(records, 1) + 1000
