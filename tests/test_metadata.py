"""Unit tests of the parts of batchrun.store.metadata that read back damaged files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrun.errors import MetadataError
from batchrun.runfile.file import Job
from batchrun.store.metadata import build_entry, load_metadata, render_entry, render_pending, salvage_metadata
from batchrun.store.rundir import RunsDir, read_lock_owner

A, B, C = "a" * 16, "b" * 16, "c" * 16


def _lines_layout(entries: dict[str, dict[str, object]]) -> str:
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in entries.items()) + "\n}\n"


def test_salvage_keeps_the_whole_entries_of_a_truncated_file(tmp_path: Path) -> None:
    entries = {A: {"command": "echo a", "state": "succeeded"}, B: {"command": "echo b", "parameters": {"x": {"y": 1}}}, C: {"command": "echo c"}}
    path = tmp_path / "metadata.json"
    text = _lines_layout(entries)
    path.write_text(text[: text.index(C) + 20])
    assert salvage_metadata(path) == {A: entries[A], B: entries[B]}


def test_salvage_reads_the_original_batchrun_indented_layout(tmp_path: Path) -> None:
    entries = {A: {"command": "echo a", "status": 0, "parameters": {}}, B: {"command": "echo b", "status": 1}}
    path = tmp_path / "metadata.json"
    text = json.dumps(entries, indent=4)
    path.write_text(text[:-1])  # the closing brace torn off
    assert salvage_metadata(path) == entries


def test_salvage_drops_entries_holding_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    good = _lines_layout({A: {"command": "echo é"}, B: {"command": "echo b"}}).encode()
    path.write_bytes(good.replace(b"echo b", b"echo \xff"))
    assert salvage_metadata(path) == {A: {"command": "echo é"}}


@pytest.mark.parametrize("data", [b"", b"\0" * 100, bytes(range(256)), b"[" * 100_000, b'{"abc": {"status": 0}}', b'"' + b"a" * 16 + b'": {' * 50_000])
def test_salvage_of_garbage_is_nothing_and_no_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "metadata.json"
    path.write_bytes(data)
    assert salvage_metadata(path) == {}


def test_a_non_utf8_metadata_json_is_corrupt_and_names_the_repair(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_bytes(b'{"x": "\xff"}')
    with pytest.raises(MetadataError, match=r"corrupt metadata \(not UTF-8 at byte 7\); batchrun launch rebuilds it"):
        load_metadata(path)


@pytest.mark.parametrize(
    ("content", "owner"),
    [(b"123\n", 123), (b"", None), (b"\xff\xfe", None), (b"0\n", None), (b"-5\n", None), (b"99999999999999999999\n", None), (b"1" * 100_000, None), (b"12 34\n", None)],
)
def test_a_damaged_lock_file_names_no_owner(tmp_path: Path, content: bytes, owner: int | None) -> None:
    (tmp_path / ".lock").write_bytes(content)
    assert read_lock_owner(RunsDir(tmp_path)) == owner


@pytest.mark.parametrize(
    "command",
    [
        "true 1",
        "python train.py --lr 0.01 --seed 3",
        "python t.py --lr=0.1 --name='é ü' --flag --lr=0.2",
        'echo "a\\"b" \u2603 \x01 \x7f --k=\u2028 --=x --',
        "unbalanced 'quote --a=1",
        "tab\there --x=\"y z\"",
    ],
)
def test_a_pending_entry_from_its_template_is_the_entry_build_entry_renders(command: str) -> None:
    # The fresh build renders pending jobs from a template: byte for byte the general path's line.
    for job_id, log_dir in [("0123456789abcdef", "/runs/a/logs/0123456789abcdef"), ("0123456789abcdef", 'C:\\ré "x"\n/0123456789abcdef')]:
        job = Job(command, job_id, 12)
        assert render_pending(job, log_dir) == render_entry(job_id, build_entry(job, None, log_dir))
