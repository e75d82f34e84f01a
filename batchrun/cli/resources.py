"""`batchrun status --resources`: what a target's jobs used, and what to ask a cluster for."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import IO

from batchrun.cli.words import count
from batchrun.results.tables import format_duration
from batchrun.status.resources import HEADROOM, summarise
from batchrun.store.records import JobRecord

__all__ = ["write_resources"]


def _megabytes(mb: float) -> str:
    return f"{mb:.0f}M"


def write_resources(out: IO[str], given: object, records: Callable[[], Iterable[JobRecord | None]], as_json: bool, as_csv: bool) -> None:
    """Print the summary (of the records `records` gives, again for each measure): a table, or one JSON object, or CSV rows (measure, p50, p95, max)."""
    resources = summarise(records)
    if as_json:
        out.write(json.dumps(resources.as_dict()) + "\n")
        return
    rows: list[tuple[str, tuple[float, float, float] | None, Callable[[float], str]]] = [
        ("peak memory", resources.memory_mb, _megabytes),
        ("runtime", resources.runtime_s, format_duration),
        ("cpu (user+sys)", resources.cpu_s, format_duration),
    ]
    if resources.gpu_mb is not None:
        rows.append(("peak GPU memory", resources.gpu_mb, _megabytes))
    if as_csv:
        out.write("measure,p50,p95,max\n")
        names = {"peak memory": "memory_mb", "runtime": "runtime_s", "cpu (user+sys)": "cpu_s", "peak GPU memory": "gpu_mb"}
        for name, values, _ in rows:
            out.write(",".join([names[name], *(("" if values is None else repr(v)) for v in values or (None, None, None))]) + "\n")
        return
    out.write(f"{given}: {count(resources.jobs, 'job')} ran to an end, {resources.measured} with their usage recorded\n")
    if not resources.jobs:
        return
    out.write(f"{'':<16}{'p50':>10}{'p95':>10}{'max':>10}\n")
    for name, values, shown in rows:
        cells = ["-"] * 3 if values is None else [shown(v) for v in values]
        out.write(f"{name:<16}" + "".join(f"{cell:>10}" for cell in cells) + "\n")
    hint = resources.sbatch_hint()
    if hint is not None:
        out.write(f'hint (p95 + {round((HEADROOM - 1) * 100)}%): --sbatch-args "{hint}"\n')
