"""runfile.packed: a long runfile's bytes held compressed read back exactly as the bytes, however sliced."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.errors import RunfileError
from batchrun.runfile import file, packed, parse
from batchrun.runfile.file import job_id_of, load_runfile
from batchrun.runfile.jobtable import Job
from batchrun.runfile.packed import PackedBytes, packed_if_long
from batchrun.runfile.parse import parse_commands


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 16])
def test_every_slice_and_find_is_the_bytes_one(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(packed, "BLOCK", block)
    rng = random.Random(block)
    data = b"".join(f"python train.py --lr {rng.random():.4f} --seed {i} é\n".encode() for i in range(40))
    held = PackedBytes(data)
    assert len(held) == len(data) and bytes(held) == data and b"".join(held.blocks()) == data
    spans = [(0, len(data)), (0, 0), (5, 5), (len(data) - 1, len(data) + 10), (-10, None), (None, 3)]
    spans += [tuple(sorted((rng.randrange(len(data) + 1), rng.randrange(len(data) + 1)))) for _ in range(300)]
    for start, stop in spans:
        assert held[start:stop] == data[start:stop], (start, stop)
    for start in [0, 1, *(rng.randrange(len(data) + 5) for _ in range(100))]:
        assert held.find(b"\n", start) == data.find(b"\n", start)
        assert held.find(b"!", start) == -1
    with pytest.raises(ValueError):
        held[::2]
    with pytest.raises(TypeError):
        held[3]  # type: ignore[call-overload]


def test_only_long_unchanging_bytes_are_packed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packed, "PACK_FROM", 100)
    assert isinstance(packed_if_long(b"x" * 100), PackedBytes)
    assert packed_if_long(b"x" * 99) == b"x" * 99
    grown = bytearray(b"x" * 200)  # a followed runfile's table, appended to: left as it is
    assert packed_if_long(grown) is grown


def test_a_packed_table_gives_the_same_jobs_and_takes_appends(monkeypatch: pytest.MonkeyPatch) -> None:
    data = "".join(f"echo {i} {'y' * (i % 13)}\n" + ("# note\n\n" if i % 7 == 0 else "") for i in range(500)).encode() + b"echo 3 yyy\n"
    plain, plain_repeats = parse_commands(data)
    monkeypatch.setattr(packed, "PACK_FROM", 0)
    monkeypatch.setattr(packed, "BLOCK", 29)
    table, repeats = parse_commands(data)
    assert isinstance(table.blob, PackedBytes) and repeats == plain_repeats
    assert list(table) == list(plain) and list(table.jobs_at([499, 0, 250])) == list(plain.jobs_at([499, 0, 250]))
    assert [table.command_bytes(i) for i in range(len(table))] == [plain.command_bytes(i) for i in range(len(plain))]
    new = Job("echo appended", job_id_of("echo appended"), 999)
    table.append(new)
    plain.append(new)
    assert list(table) == list(plain) and isinstance(table.blob, bytearray)


def test_the_part_of_a_packed_text_after_a_point_parses_in_place_as_its_copy_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # A relaunch parses a runfile's changed part in place (`start`): the same jobs as a parse of a copy
    # of that part, placed by the whole text and over its bytes (no copy held), even when blocks
    # of the parse (`parse._BLOCK`) and of the packing (`packed.BLOCK`) cut lines anywhere.
    data = "".join(f"echo {i} {'y' * (i % 13)}\n" + ("# note\n\n" if i % 7 == 0 else "") for i in range(500)).encode() + b"echo 3 yyy\necho 4"
    monkeypatch.setattr(packed, "PACK_FROM", 0)
    monkeypatch.setattr(packed, "BLOCK", 29)
    monkeypatch.setattr(parse, "_BLOCK", 41)
    text = packed_if_long(data)
    assert isinstance(text, PackedBytes)
    for cut in (0, data.index(b"\n") + 1, data.index(b"echo 250"), data.rindex(b"echo 3 yyy"), len(data) - len(b"echo 4"), len(data)):
        first_line = data.count(b"\n", 0, cut) + 1
        table, repeats = parse_commands(text, first_line, start=cut)
        alone, alone_repeats = parse_commands(data[cut:], first_line)
        assert table.blob is text and repeats == alone_repeats
        assert list(table) == list(alone)
        (starts, ends, _), (alone_starts, alone_ends, _) = table.columns(), alone.columns()
        assert [start - cut for start in starts] == list(alone_starts) and [end - cut for end in ends] == list(alone_ends)


_TEXTS = {
    "plain": b"".join(f"python train.py --seed {i}\n".encode() for i in range(60)),
    "crlf, lone cr, bom, blank and comment lines": b"\xef\xbb\xbfa 1\r\n\r\nb 2\rc 3\r\n# note\n  d 4  \n\r\n" * 9 + b"e 5\r",
    "directives, repeats, unicode, no last newline": b"".join(
        f"# batchrun: gpus={i % 3}\nx \xe9 {i}\nx \xe9 {i}\n# batchrun: cpus=2\ny\t{i}\n\x1fz{i}\n".encode() for i in range(7)
    )
    + b"w",
}
_BAD = {
    "a NUL byte late": (_TEXTS["plain"] * 2 + b"ok\nbad\0line\n", "binary file"),
    "bad UTF-8, then a NUL byte": (_TEXTS["plain"] + b"bad \xff\n" + _TEXTS["plain"] + b"\0\n", "binary file"),
    "bad UTF-8": (_TEXTS["plain"] + b"bad \xc3(\n", "not UTF-8"),
    "a bad directive": (_TEXTS["plain"] + b"# batchrun: gpus=many\n", "gpus"),
}


@pytest.mark.parametrize("read", [1, 2, 7, 1 << 20])
@pytest.mark.parametrize("name", list(_TEXTS))
def test_a_long_runfile_read_a_block_at_a_time_is_the_one_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, read: int) -> None:
    path = tmp_path / "jobs.runfile"
    path.write_bytes(_TEXTS[name])
    monkeypatch.setattr(file, "PACK_FROM", 1 << 30)
    whole = load_runfile(path)
    monkeypatch.setattr(file, "PACK_FROM", 1)
    monkeypatch.setattr(file, "_READ", read)
    monkeypatch.setattr(packed, "BLOCK", 5)
    streamed = load_runfile(path)
    assert isinstance(streamed.jobs.blob, PackedBytes)
    assert bytes(streamed.jobs.blob) == bytes(whole.jobs.blob)
    assert list(streamed.jobs) == list(whole.jobs) and len(whole.jobs) > 5
    assert (streamed.duplicates, streamed.digest) == (whole.duplicates, whole.digest)


@pytest.mark.parametrize("name", list(_BAD))
def test_a_long_bad_runfile_read_a_block_at_a_time_is_refused_as_one_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    text, words = _BAD[name]
    path = tmp_path / "jobs.runfile"
    path.write_bytes(text)
    monkeypatch.setattr(file, "PACK_FROM", 1 << 30)
    with pytest.raises(RunfileError) as whole:
        load_runfile(path)
    monkeypatch.setattr(file, "PACK_FROM", 1)
    monkeypatch.setattr(file, "_READ", 16)
    with pytest.raises(RunfileError) as streamed:
        load_runfile(path)
    assert str(streamed.value) == str(whole.value) and words in str(whole.value)


def test_a_long_runfile_keeps_big_arrays_in_memory_maps_of_their_own(tmp_path: Path) -> None:
    """Read in a fresh process: glibc's threshold for a block of its own is fixed from then on (`_memory`)."""
    path = tmp_path / "long.runfile"
    path.write_bytes(b"".join(b"python train.py --seed %d\n" % i for i in range(400_000)))  # past PACK_FROM
    code = (
        "import sys; from pathlib import Path; import batchrun._memory as m; from batchrun.runfile.file import load_runfile\n"
        "assert not m._done; jobs = load_runfile(Path(sys.argv[1])).jobs; print(len(jobs), m._done, m.compact_heap())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["400000", "True", "True"]


_THREADS_ALLOCATE = """
import ctypes, sys, threading
from pathlib import Path
from batchrun.runfile.file import load_runfile
if sys.argv[1] != "-":
    load_runfile(Path(sys.argv[1]))
barrier = threading.Barrier(8)
def work():
    barrier.wait()  # all at once: each new thread's first malloc takes a heap
    held = [bytearray(4096 + i) for i in range(2000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per heap, on stderr
"""


@pytest.mark.skipif(not hasattr(os, "confstr") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""), reason="glibc's allocator only")
@pytest.mark.parametrize("env", [None, "4"], ids=["capped", "the-user's-cap"])
def test_a_long_runfile_shares_two_heaps_among_a_launch_s_threads(tmp_path: Path, env: str | None) -> None:
    # A thread per job slot: at -j 8, a heap each held 15-20 MB of free holes at a million-line launch's peak.
    path = tmp_path / "long.runfile"
    path.write_bytes(b"".join(b"python train.py --seed %d\n" % i for i in range(400_000)))  # past PACK_FROM
    environ = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    if env is not None:
        environ["MALLOC_ARENA_MAX"] = env

    def heaps(target: str) -> int:
        err = subprocess.run([sys.executable, "-c", _THREADS_ALLOCATE, target], capture_output=True, text=True, check=True, env=environ).stderr
        return err.count("Arena ")

    assert heaps("-") > 2, "a short runfile (or none): glibc's own setting, a heap per thread"
    assert heaps(str(path)) == (2 if env is None else 4)
