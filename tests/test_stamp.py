"""Unit tests of batchrun.store.stamp: any damage to the stamp reads as "no stamp"."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.store.stamp import STAMP_NAME, Stamp, metadata_unchanged, read_stamp, write_stamp


def _stamp(tmp_path: Path, name: str = "metadata.json") -> Stamp:
    (tmp_path / "jobs.journal").write_text("E 0123456789abcdef 1 0 1.000000 2.000000\n")
    (tmp_path / name).write_text("{}\n")
    return Stamp.now(tmp_path, tmp_path / "jobs.journal", name, "d" * 32)


@pytest.mark.parametrize("name", ["metadata.json", "my meta.json", "métadonnées.json"])
def test_a_written_stamp_reads_back_equal(tmp_path: Path, name: str) -> None:
    stamp = _stamp(tmp_path, name)
    write_stamp(tmp_path, stamp)
    assert read_stamp(tmp_path) == stamp
    assert metadata_unchanged(tmp_path, name)


def test_the_stamp_tells_an_edited_metadata_json(tmp_path: Path) -> None:
    write_stamp(tmp_path, _stamp(tmp_path))
    (tmp_path / "metadata.json").write_text('{"x": {}}\n')
    assert not metadata_unchanged(tmp_path, "metadata.json")
    assert read_stamp(tmp_path) != Stamp.now(tmp_path, tmp_path / "jobs.journal", "metadata.json", "d" * 32)


def test_a_missing_journal_and_metadata_give_a_stamp(tmp_path: Path) -> None:
    stamp = Stamp.now(tmp_path, tmp_path / "jobs.journal", "metadata.json", "x")
    assert (stamp.journal_size, stamp.metadata_id) == (0, "none")


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda good: good[: len(good) // 2], id="truncated"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: good.replace(b"1", b"\xff", 1), id="non-utf8"),
        pytest.param(lambda good: b"\0" * 200, id="nul-filled"),
        pytest.param(lambda good: bytes(range(256)) * 40, id="binary-and-long"),
        pytest.param(lambda good: b"2" + good[1:], id="other-version"),
        pytest.param(lambda good: good.replace(b" ", b"  "), id="extra-spaces"),
        pytest.param(lambda good: good.replace(b"1 ", b"1 \xc2\xb2", 1), id="unicode-digit"),
        pytest.param(lambda good: b"1 2 3\n", id="too-few-fields"),
        pytest.param(lambda good: good + good, id="two-lines"),
    ],
)
def test_any_damage_reads_as_no_matching_stamp(tmp_path: Path, damage: object) -> None:
    stamp = _stamp(tmp_path)
    write_stamp(tmp_path, stamp)
    path = tmp_path / STAMP_NAME
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    assert read_stamp(tmp_path) != stamp
    assert not metadata_unchanged(tmp_path, "metadata.json")


def test_a_stamp_that_is_a_directory_or_unwritable_is_no_error(tmp_path: Path) -> None:
    (tmp_path / STAMP_NAME).mkdir()
    assert read_stamp(tmp_path) is None
    write_stamp(tmp_path, _stamp(tmp_path))  # only an optimisation: no exception
    assert read_stamp(tmp_path) is None
