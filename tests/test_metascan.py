"""`store.metascan.EntryScan`: the entries `iter_metadata` reads, a never-run job's known by its bytes, and the same errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchrun.errors import MetadataError
from batchrun.store.metadata import iter_metadata
from batchrun.store.metascan import EntryScan


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
    ],
)
def test_a_damaged_or_other_file_reads_and_fails_as_iter_metadata(tmp_path: Path, text: str) -> None:
    path = tmp_path / "metadata.json"
    path.write_text(text)
    scanned, read = _outcome(EntryScan(path)), _outcome(iter_metadata(path))
    assert scanned == read



def test_no_file_no_entries(tmp_path: Path) -> None:
    assert list(EntryScan(tmp_path / "metadata.json")) == []
