"""`store.metascan.EntryScan`: the entries `iter_metadata` reads, a never-run job's known by its bytes, and the same errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchrun.errors import MetadataError
from batchrun.runfile.file import Job
from batchrun.store.metadata import build_entry, iter_metadata
from batchrun.store.metascan import EntryScan
from batchrun.store.records import JobRecord


def _pending(command: str, line: int, parameters: dict[str, Any] | None = None, attempts: int = 0) -> dict[str, Any]:
    # In `build_entry`'s order, as a launch renders a job with no record.
    return {
        "command": command, "status": None, "start": None, "runtime": None, "parameters": parameters or {}, "state": "pending",
        "end": None, "line": line, "attempts": attempts, "exit_codes": [], "host": None, "pid": None, "job_ref": None, "slot": None,
        "max_rss_kb": None, "user_cpu_s": None, "sys_cpu_s": None, "code": None, "log_dir": f"/runs/x/logs/{line:016x}",
    }


ENTRIES: list[tuple[str, dict[str, Any]]] = [
    ("0" * 15 + "1", _pending("true 1", 1)),
    ("0" * 15 + "2", _pending("python3 train.py --lr=0.1 --name=a b", 2, {"lr": 0.1, "name": "a b", "flag": True, "n": -3e-5, "none": None})),
    ("0" * 15 + "3", _pending('echo "quoted" \\ back', 3)),  # escapes: decoded
    ("0" * 15 + "4", _pending("echo héllo", 4)),  # \u escapes: decoded
    ("0" * 15 + "5", _pending("true 5", 5, {"state": "succeeded", "attempts": 3})),  # the entry's own state is pending
    ("0" * 15 + "6", _pending("true 6", 6, attempts=1)),  # a --rerun-all not yet run: decoded
    ("0" * 15 + "7", {**_pending("true 7", 7), "state": "succeeded", "status": 0, "start": 1.0, "end": 2.0, "attempts": 1}),
    ("0" * 15 + "8", {"command": "true 8", "status": 0}),  # the original batchrun's: no state
    ("not-a-job-id", _pending("true 9", 9)),
    ("0" * 15 + "a", {**_pending("true 10", 10), "parameters": {"nested": {"a": 1}}}),
]
NEVER_RUN = {"0" * 15 + "1", "0" * 15 + "2", "0" * 15 + "5"}


def _ran(n: int, command: str, **values: Any) -> tuple[str, dict[str, Any]]:
    """A job with a record, its entry as `build_entry` makes it."""
    job_id = f"{n:016x}"
    rec = JobRecord(job_id)
    for name, value in values.items():
        setattr(rec, name, value)
    return job_id, build_entry(Job(command, job_id, n), rec, f"/runs/x/logs/{job_id}")


_DONE = {"status": 0, "start": 1796394738.930863, "end": 1796394738.935863, "attempts": 1, "exit_codes": [0], "host": "node1"}
RAN = [
    _ran(21, "true 21", state="succeeded", **_DONE, code="3f2a9c1", max_rss_kb=1800, user_cpu_s=0.001, sys_cpu_s=1e-05),
    _ran(22, "python3 t.py --lr=0.1", state="failed", **{**_DONE, "status": 2, "attempts": 3, "exit_codes": [1, -9, 2]}, requeues=1, max_gpu_mem_mb=512),
    _ran(23, "sleep 100", state="running", start=5.0, attempts=1, slot=1, host="gpu-box", ref="12345", holds="gpu=0,1;cpus=8"),
    _ran(24, "sleep 100", state="running", start=5.0, attempts=2, slot=0, host="c1", ref="4711_3", exit_codes=[1]),
    _ran(25, "true 25", state="interrupted", start=-0.0, end=2.5e20, attempts=1, exit_codes=[130], status=130),
]
# Records rendered otherwise than `_RAN` takes (decoded, as before).
DECODED = [
    _ran(31, "true 31", state="succeeded", **{**_DONE, "host": "nöde"}),  # not ASCII
    _ran(32, "true 32", state="failed", **{**_DONE, "exit_codes": [None, 1]}),  # an exit code not known
    _ran(33, "true 33", state="succeeded", **{**_DONE, "start": float("inf")}),  # not JSON (Python reads it)
    _ran(34, 'echo "x"', state="succeeded", **_DONE),  # an escape in the command
]


def _layout(entries: list[tuple[str, dict[str, Any]]]) -> str:
    return "{\n" + ",\n".join(f'  "{job_id}": {json.dumps(entry)}' for job_id, entry in entries) + "\n}\n"


def _read(scan: EntryScan) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, scan.entry() if entry is None else entry) for job_id, entry in scan]


def _outcome(entries: Any) -> tuple[list[tuple[str, Any]], str | None]:
    """What is given before any error, and the error."""
    given: list[tuple[str, Any]] = []
    try:
        for job_id, entry in entries:
            given.append((job_id, entries.entry() if entry is None else entry))
    except MetadataError as err:
        return given, str(err)
    return given, None


def test_the_entries_are_iter_metadatas_with_only_never_run_lines_undecoded(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(_layout(ENTRIES))
    scan = EntryScan(path)
    assert {job_id for job_id, entry in scan if entry is None} == NEVER_RUN
    assert _read(EntryScan(path)) == list(iter_metadata(path)) == ENTRIES


def test_with_ran_the_entries_of_jobs_that_ran_in_batchruns_rendering_are_given_undecoded_too(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(_layout([*ENTRIES, *RAN, *DECODED]))
    # Of `ENTRIES`, the --rerun-all not yet run (6) and the finished one (7) are batchrun's renderings too.
    ran = {"0" * 15 + "6", "0" * 15 + "7"} | {job_id for job_id, _ in RAN}
    assert {job_id for job_id, entry in EntryScan(path, ran=True) if entry is None} == NEVER_RUN | ran
    assert {job_id for job_id, entry in EntryScan(path) if entry is None} == NEVER_RUN
    assert _read(EntryScan(path, ran=True)) == list(iter_metadata(path)) == [*ENTRIES, *RAN, *DECODED]


@pytest.mark.parametrize("ran", [False, True], ids=["never-run", "ran"])
@pytest.mark.parametrize(
    "text",
    [
        _layout(ENTRIES)[:-40],  # torn: the last line cut short
        _layout(ENTRIES)[:-3],  # the last line whole, no closing brace
        _layout(ENTRIES).replace('"line": 2,', '"line": 02,'),  # a never-run line, but not JSON
        _layout(ENTRIES).replace('"true 5"', '"true\t5"'),  # a control character in a string
        _layout(ENTRIES[:3]) + "garbage\n",  # after the closing brace
        _layout(ENTRIES[:3]).replace(",\n", ",\ngarbage\n", 1),
        _layout(ENTRIES[:3]).replace("\n}\n", "\n}"),
        json.dumps(dict(ENTRIES), indent=2),  # the original batchrun's layout
        "{}\n",
        "",
        "{\n}\n",
        _layout(RAN).replace('"line": 21,', '"line": 021,'),  # a line of a job that ran, but not JSON
        _layout(RAN).replace('"attempts": 3', '"attempts": 3, "attempts": 4'),  # not batchrun's rendering
    ],
)
def test_a_damaged_or_other_file_reads_and_fails_as_iter_metadata(tmp_path: Path, text: str, ran: bool) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(text)
    scanned, read = _outcome(EntryScan(path, ran)), _outcome(iter_metadata(path))
    assert scanned == read



def test_no_file_no_entries(tmp_path: Path) -> None:
    assert list(EntryScan(tmp_path / "metadata.json")) == []
