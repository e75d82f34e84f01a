"""Compressed entry blocks write exactly the file a dict of rendered lines wrote."""

from __future__ import annotations

import json
import random
from pathlib import Path

from batchrun.runfile.jobtable import Job, JobTable
from batchrun.store.metadata import MetadataView
from batchrun.store.viewblocks import BLOCK, EntryBlocks, json_object_chunks


def old_file(rendered: dict[str, str]) -> bytes:
    """metadata.json as the dict-of-lines view wrote it."""
    parts = list(rendered.values())
    if not parts:
        return b"{}\n"
    return ("{\n" + ",\n".join(parts) + "\n}\n").encode()


def written(blocks: EntryBlocks) -> bytes:
    return b"".join(json_object_chunks(blocks.snapshot()))


def test_same_bytes_as_a_dict_through_puts_removes_and_re_adds() -> None:
    rng = random.Random(7)
    model: dict[str, str] = {}
    blocks = EntryBlocks()
    keys = [f"{rng.getrandbits(64):016x}" for _ in range(3 * BLOCK)] + ["legacy-key", "ünïcode"]
    for step in range(6000):
        key = rng.choice(keys)
        if rng.random() < 0.2:
            assert blocks.remove(key) == (model.pop(key, None) is not None)
        else:
            line = f'  "{key}": {json.dumps({"step": step, "text": "é" * rng.randrange(3)}, ensure_ascii=False)}'
            model[key] = line
            blocks.put(key, line)
        assert len(blocks) == len(model)
        if step % 500 == 0:
            assert written(blocks) == old_file(model)
    assert written(blocks) == old_file(model)
    for key in list(model):
        blocks.remove(key)
    assert written(blocks) == b"{}\n"


def test_first_build_appends_without_look_ups() -> None:
    blocks = EntryBlocks()
    model = {f"{i:016x}": f'  "{i:016x}": {{"line": {i}}}' for i in range(2 * BLOCK + 3)}
    for key, line in model.items():
        blocks.append_new(key, line)
    assert written(blocks) == old_file(model)
    blocks.put(f"{5:016x}", '  "0000000000000005": {"line": "changed"}')
    model[f"{5:016x}"] = '  "0000000000000005": {"line": "changed"}'
    assert written(blocks) == old_file(model)


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


def test_ids_repeat() -> None:
    table = JobTable([Job("a", "1" * 16, 1), Job("b", "2" * 16, 2), Job("c", "odd", 3), Job("d", "other odd", 4)])
    assert not table.ids_repeat()
    table.append(Job("e", "2" * 16, 5))  # another command, the same id
    assert table.ids_repeat()
    assert JobTable([Job("a", "odd", 1), Job("b", "odd", 2)]).ids_repeat()
