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
    finished, running = State.FINISHED, State.RUNNING
    for rec in records:
        # Each field read once: a record of a `RecordTable` reads its row's column at every access.
        job_id, state, attempts, start, end, ignored = rec.job_id, rec.state, rec.attempts, rec.start, rec.end, rec.ignored
        lines: list[str] = []
        timed = start is not None and end is not None
        # Earlier attempts keep their exit codes (their times are not kept).
        if timed:
            codes = rec.exit_codes
            for n, code in enumerate(codes[:-1], start=attempts - len(codes) + 1):
                if code is None or code == REQUEUE_STATUS:
                    # A 75 was (almost always) a requeue: kept as one, so the requeue count survives.
                    unfinished = State.INTERRUPTED if code is None else State.REQUEUED
                    lines.append(f"I {job_id} {n} {start:.6f} {end:.6f} {unfinished}\n")
                else:
                    lines.append(f"E {job_id} {n} {code} {start:.6f} {end:.6f}\n")
        rss, user, system = rec.max_rss_kb, rec.user_cpu_s, rec.sys_cpu_s
        if rss is not None and user is not None and system is not None and state != running:
            gpu_mb = rec.max_gpu_mem_mb
            gpu = "" if gpu_mb is None else f" {gpu_mb}"
            lines.append(f"U {job_id} {attempts} {rss} {user:.3f} {system:.3f}{gpu}\n")
        status = rec.status if state in finished else None
        if timed and status is not None:
            # The state and host ride along: the S line that held the host goes.
            host = rec.host
            extra = f" {state} {host}" if host else (f" {state}" if state == State.TIMEOUT else "")
            if host and (code_version := rec.code) is not None:
                extra += f" {code_version}"
            lines.append(f"E {job_id} {attempts} {status} {start:.6f} {end:.6f}{extra}\n")
        elif state == running and start is not None:
            # Left running on purpose (detached): keep what adoption needs.
            lines.append(f"S {job_id} {attempts} {start:.6f} {rec.slot} {rec.host}{start_extras(rec.holds, rec.code)}\n")
            if (ref := rec.ref) is not None:
                lines.append(f"P {job_id} {attempts} {ref} 0\n")
        elif timed:
            code_version = rec.code
            lines.append(f"I {job_id} {attempts} {start:.6f} {end:.6f} {state}{'' if code_version is None else ' ' + code_version}\n")
        elif not ignored:
            dropped.append(job_id)  # forgotten and not run since: no line, as if never named
        if ignored:
            lines.append(f"X {job_id}\n")
        yield from lines


# Lines a job's one attempt leaves (S, P, U, E): a journal of a single launch is not rewritten. The rewrite would
# halve it, but cost every fresh launch at its end (27 ms of a 3 s, 5,000-job launch; fsyncs on a disk) while only
# a replay without the resume snapshot reads the longer file (52 ms instead of 37 at 5,000 jobs).
_LINES_PER_ATTEMPT = 4


def compaction_due(lines: int, records: int) -> bool:
    """Whether a journal of this many lines for this many records is due a rewrite (`Journal.compact`): more than an attempt's lines a job."""
    return lines > _LINES_PER_ATTEMPT * max(records, 1) + 1000
