"""metadata.json as the file last written plus the changes: the bytes a dict of rendered lines wrote, in every order of changes."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchrun.store import viewfile, viewwrite
from batchrun.store.metadata import MetadataView
from batchrun.store.viewfile import ViewFile


def dict_file(rendered: dict[str, bytes]) -> bytes:
    """metadata.json as a dict of rendered lines (the view before the file-backed one) wrote it."""
    parts = list(rendered.values())
    if not parts:
        return b"{}\n"
    return b"{\n" + b",\n".join(parts) + b"\n}\n"


@pytest.mark.parametrize("rows", [1 << 16, 3], ids=["whole-runs", "runs-in-blocks-of-3"])
def test_same_bytes_as_a_dict_through_puts_removes_re_adds_and_rewrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    # A rewrite shifts and scans the unchanged runs a block of positions at a time (bounded memory at a
    # million entries): blocks of 3 put block edges inside every run, and runs that start or end without lines.
    monkeypatch.setattr(viewwrite, "_ROWS", rows)
    rng = random.Random(7)
    path = tmp_path / "metadata.json"
    model: dict[str, bytes] = {}
    view = ViewFile(path)
    keys = [f"{rng.getrandbits(64):016x}" for _ in range(300)] + ["legacy-key", "ünïcode"]
    for step in range(6000):
        key = rng.choice(keys)
        if rng.random() < 0.2:
            assert view.remove(key) == (model.pop(key, None) is not None)
        else:
            line = f'  "{key}": {json.dumps({"step": step, "text": "é" * rng.randrange(3)}, ensure_ascii=False)}'.encode()
            model[key] = line
            view.put(key, line)
        assert len(view) == len(model)
        if step % 97 == 0:
            # A rewrite now and then: later ones copy what it wrote.
            view.write()
            assert path.read_bytes() == dict_file(model)
            assert view.line(key) == model.get(key)
    view.write()
    assert path.read_bytes() == dict_file(model)
    for key in list(model):
        view.remove(key)
    view.write()
    assert path.read_bytes() == b"{}\n"


def test_rebuild_streams_the_entries_and_later_writes_copy_them(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    view = ViewFile(path)
    model = {f"{i:016x}": f'  "{i:016x}": {{"line": {i}}}'.encode() for i in range(5000)}
    view.rebuild(model.items())
    assert path.read_bytes() == dict_file(model)
    assert view.layout() is not None
    view.put(f"{5:016x}", b'  "0000000000000005": {"line": "changed"}')
    model[f"{5:016x}"] = b'  "0000000000000005": {"line": "changed"}'
    assert view.layout() is None, "a change not written yet"
    snap = view.snapshot()
    view.put(f"{6:016x}", b'  "0000000000000006": {"line": "later"}')  # after the snapshot: the next write's
    view.write(snap)
    assert path.read_bytes() == dict_file(model)
    model[f"{6:016x}"] = b'  "0000000000000006": {"line": "later"}'
    view.write()
    assert path.read_bytes() == dict_file(model)
    view.rebuild([])
    assert path.read_bytes() == b"{}\n"


def test_a_rebuild_in_another_order_moves_the_positions_the_last_changes_were_at(tmp_path: Path) -> None:
    # A key's position is remembered once it was changed (a running job's entry changes at its start, pid
    # and end); a rebuild lays the entries out anew, so a change after it goes where the key is now.
    path = tmp_path / "metadata.json"
    view = ViewFile(path)
    lines = {key: f'  "{key}": {{"n": {n}}}'.encode() for n, key in enumerate(("a", "b", "c"))}
    for key, line in lines.items():
        view.put(key, line)
        view.put(key, line)  # the second finds the position remembered
    view.rebuild([("c", lines["c"]), ("a", lines["a"])])
    view.put("a", b'  "a": {"n": "changed"}')
    view.write()
    assert path.read_bytes() == dict_file({"c": lines["c"], "a": b'  "a": {"n": "changed"}'})


def test_view_writes_the_file_and_snapshots_stay_as_taken(tmp_path: Path) -> None:
    view = MetadataView(tmp_path / "metadata.json")
    view.write()
    assert (tmp_path / "metadata.json").read_bytes() == b"{}\n"
    view.set("a" * 16, {"command": "echo é", "line": 1}, new=True)
    taken = view.snapshot()
    view.set("a" * 16, {"command": "echo é", "line": 2})
    view.write(taken)
    assert json.loads((tmp_path / "metadata.json").read_text()) == {"a" * 16: {"command": "echo é", "line": 1}}
    view.write()
    assert (tmp_path / "metadata.json").read_text(encoding="utf-8") == '{\n  "aaaaaaaaaaaaaaaa": {"command": "echo é", "line": 2}\n}\n'


@pytest.mark.parametrize("fail_at", [0, 1, 4, 9, None], ids=["first-piece", "second-piece", "fifth-piece", "tenth-piece", "at-the-rename"])
def test_a_failed_write_leaves_the_positions_those_of_the_file_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int | None) -> None:
    # A write moves the position arrays in place as it goes; when it fails (a full disk) they are moved back,
    # so the next write still copies the right bytes of the file that stayed.
    monkeypatch.setattr(viewwrite, "_ROWS", 3)
    rng = random.Random(fail_at)
    path = tmp_path / "metadata.json"
    view = ViewFile(path)
    model: dict[str, bytes] = {}
    keys = [f"{rng.getrandbits(64):016x}" for _ in range(80)]
    real = viewfile.write_atomic

    def fails(target: Path, pieces: Iterator[bytes], **options: object) -> None:
        for n, _ in enumerate(pieces):
            if n == fail_at:
                raise OSError(28, "No space left on device")
        raise OSError(5, "the rename failed")

    for step in range(12):
        for key in rng.sample(keys, 25):
            if rng.random() < 0.2:
                view.remove(key)
                model.pop(key, None)
            else:
                model[key] = f'  "{key}": {json.dumps({"step": step, "pad": "x" * rng.randrange(40)})}'.encode()
                view.put(key, model[key])
        if step % 3:
            before = path.read_bytes() if path.exists() else None
            monkeypatch.setattr(viewfile, "write_atomic", fails)
            with pytest.raises(OSError):
                view.write()
            monkeypatch.setattr(viewfile, "write_atomic", real)
            assert (path.read_bytes() if path.exists() else None) == before
        view.write()
        assert path.read_bytes() == dict_file(model)
        assert all(view.line(key) == model.get(key) for key in keys)


def test_marked_entries_are_rendered_as_written_with_changes_made_while_it_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A launch marks changed entries and its rewrite renders them from the records as it reaches them (a batch at a
    # time), while workers go on marking and removing: the file is what a dict of the lines at render time writes,
    # a mark set after the snapshot (even on an entry the write rendered) is the next write's, and an entry removed
    # and added again while the write renders is written once, at the end.
    monkeypatch.setattr(viewfile, "_RENDER_ROWS", 4)
    rng = random.Random(11)
    path = tmp_path / "metadata.json"
    model: dict[str, bytes] = {}
    during: list[tuple[str, str]] = []  # what the "other thread" does at the next render: ("mark" | "remove", key)
    batches: list[int] = []

    def render(keys: list[str]) -> list[bytes]:
        batches.append(len(keys))
        lines = [model.get(key, b"") for key in keys]
        while during:
            what, key = during.pop()
            if what == "remove":
                view.remove(key)
                model.pop(key, None)
            else:
                model[key] = f'  "{key}": {{"again": {len(batches)}}}'.encode()
                view.mark(key)
        return lines

    view = ViewFile(path, render)
    keys = [f"{rng.getrandbits(64):016x}" for _ in range(60)]
    for step in range(400):
        key = rng.choice(keys)
        if rng.random() < 0.15:
            view.remove(key)
            model.pop(key, None)
        elif rng.random() < 0.5:
            model[key] = f'  "{key}": {json.dumps({"step": step})}'.encode()
            view.put(key, model[key])
        else:
            model[key] = f'  "{key}": {json.dumps({"marked": step})}'.encode()
            view.mark(key)
        assert len(view) == len(model)
        if step % 37 == 36:
            marked = [k for k in keys if isinstance(view._changed.get(view.keys.row_of(k)), viewwrite.Unrendered)]
            if marked:
                during.append(("mark", marked[0]))  # the render reads its line, then it changes again
                during.append(("remove", rng.choice(keys)))
            view.write()
            assert not during
            json.loads(path.read_bytes())  # the snapshot's entries, some rendered later than it was taken
            view.write()  # what changed while it wrote
            assert path.read_bytes() == dict_file(model)
            assert all(view.line(k) == model.get(k) for k in keys)
    assert batches and max(batches) <= 4


def test_a_marked_entry_removed_and_added_again_while_rendered_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    model = {key: f'  "{key}": {{"n": 0}}'.encode() for key in ("a" * 16, "b" * 16, "c" * 16)}
    renders: list[list[str]] = []

    def render(keys: list[str]) -> list[bytes]:
        renders.append(keys)
        if len(renders) == 1:  # while the write is on its way: "a" leaves the runfile, and comes back
            view.remove("a" * 16)
            model["a" * 16] = b'  "aaaaaaaaaaaaaaaa": {"n": 1}'
            view.mark("a" * 16)
        return [model[key] for key in keys]

    view = ViewFile(path, render)
    view.rebuild(model.items())
    view.mark("a" * 16)
    view.mark("c" * 16)
    view.write()
    assert renders[0] == ["a" * 16, "c" * 16]
    assert path.read_bytes() == b'{\n  "bbbbbbbbbbbbbbbb": {"n": 0},\n  "cccccccccccccccc": {"n": 0}\n}\n'
    view.write()
    assert path.read_bytes() == dict_file({"b" * 16: model["b" * 16], "c" * 16: model["c" * 16], "a" * 16: model["a" * 16]})
