"""`runfile.idindex.IdIndex` shared by threads: a launch appends rows while other threads look ids up."""

from __future__ import annotations

import hashlib
import threading

import pytest

from batchrun.runfile import idindex, idsort
from batchrun.runfile.idindex import IdIndex


def _ids(start: int, count: int) -> list[str]:
    return [hashlib.sha256(f"true {i}".encode()).hexdigest()[:16] for i in range(start, start + count)]


def test_every_row_is_found_as_rows_are_appended_and_the_index_is_built_again() -> None:
    keys = IdIndex()
    ids = _ids(0, 20_000)
    for row, job_id in enumerate(ids):
        assert keys.row_of(job_id) == -1
        assert keys.append(job_id) == row
        assert keys.row_of(job_id) == row
        assert keys.row_of(ids[row // 2]) == row // 2
    assert [keys.row_of(job_id) for job_id in ids] == list(range(len(ids)))


def test_a_row_appended_while_another_thread_builds_the_index_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # The launch's worker appends a job's first record while the metadata
    # thread's look-up builds the index: that row must stay findable, or the
    # job's end makes a second row and its first stays `running` (seen once
    # in a 100,000-job launch: "99999 succeeded, 1 running").
    keys = IdIndex()
    ids = _ids(0, 1300)
    for job_id in ids[:100]:
        keys.append(job_id)
    assert keys.row_of(ids[0]) == 0  # built
    for job_id in ids[100:]:
        keys.append(job_id)  # the tail grows past 1,024 + the index: the next look-up builds again
    late = _ids(5000, 1)[0]
    appender = threading.Thread(target=keys.append, args=(late,))
    layout = idsort.layout

    def append_during_the_build(n: int) -> tuple[int, int]:
        # The fault at the exact instant: the append comes while the build has counted its rows.
        appender.start()
        appender.join(0.3)  # it waits for the build, if the build keeps it out
        return layout(n)

    monkeypatch.setattr(idsort, "layout", append_during_the_build)
    assert keys.row_of(ids[1]) == 1  # this look-up builds
    appender.join()
    monkeypatch.setattr(idsort, "layout", layout)
    assert keys.row_of(late) == 1300
    assert [keys.row_of(job_id) for job_id in ids] == list(range(1300))


def test_the_index_sorted_a_part_at_a_time_is_the_whole_sort_with_repeats_and_odd_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small part size, so that a few thousand rows sort in 16 parts; ids
    # repeated and odd (text) ids included, as a journal can have them.
    monkeypatch.setattr(idsort, "_PART_ROWS_LOG", 8)
    ids = _ids(0, 5000) + _ids(0, 200) + ["legacy-key"]
    keys = IdIndex()
    for job_id in ids:
        keys.append(job_id)
    index, bits, shift, _ = keys._build()
    digests = keys.digests
    whole = sorted(float(((digests[row] >> shift) << bits) | row) for row in range(len(ids)))
    assert list(index) == whole
    assert [keys.row_of(job_id) for job_id in ids[:5000]] == list(range(5000))
    assert keys.rows_of(ids[7]) == [7, 5007]
    assert keys.row_of("legacy-key") == len(ids) - 1
    assert idindex.has_repeats(keys)


def test_a_twin_shares_the_ids_until_either_changes_them() -> None:
    ids = _ids(0, 3000)
    keys, other = IdIndex(), IdIndex()
    for job_id in ids:
        keys.append(job_id)
        other.append(job_id)
    assert keys.row_of(ids[5]) == 5  # keys has a sorted index (and a tail of later rows)
    twin = idindex.twin_of(other, keys)
    assert twin is not other and twin.digests is keys.digests  # one copy of the ids held
    assert idindex.twin_of(other, IdIndex()) is other  # other ids: no twin
    # Each side's appends are its own: the one that changes copies first.
    new = _ids(3000, 1200)
    for job_id in new[:600]:
        keys.append(job_id)
    for job_id in new[600:]:
        twin.append(job_id)
    assert keys.digests is not twin.digests
    assert [keys.row_of(job_id) for job_id in ids[:3] + new[:2] + new[600:602]] == [0, 1, 2, 3000, 3001, -1, -1]
    assert [twin.row_of(job_id) for job_id in ids[:3] + new[:2] + new[600:602]] == [0, 1, 2, -1, -1, 3000, 3001]
    keys.truncate(10)
    assert len(keys) == 10 and len(twin) == 3600 and twin.row_of(ids[2999]) == 2999


@pytest.mark.parametrize("dropped", [0, 1, 37, 900, 4999])
def test_truncate_leaves_the_index_a_fresh_build_would_have(dropped: int) -> None:
    """A few rows dropped are found by bisection, many filtered out: either way the index is the kept rows' own, repeats and odd ids included."""
    ids = _ids(0, 4000) + _ids(0, 500) + ["legacy-key"] + _ids(9000, 499)
    keys = IdIndex()
    for job_id in ids:
        keys.append(job_id)
    assert keys.row_of(ids[1]) == 1  # the index is built
    count = len(ids) - dropped
    keys.truncate(count)
    fresh = IdIndex()
    for job_id in ids[:count]:
        fresh.append(job_id)
    index, bits, shift, _ = keys._state()
    if (bits, shift) == fresh._state()[1:3]:  # the same layout (not after most rows went): the same entries
        assert list(index) == list(fresh._state()[0])
    assert sorted(int(entry) & ((1 << bits) - 1) for entry in index) == list(range(count))
    assert [keys.row_of(job_id) for job_id in ids] == [fresh.row_of(job_id) for job_id in ids]
    assert keys.row_of(ids[-1]) == (-1 if dropped else len(ids) - 1)


def test_rows_of_ids_appended_again_after_the_build_are_every_row_in_order() -> None:
    """An id appended several times after the index was built (a relaunch's entries set again) has all its rows found, through the tail's links."""
    keys = IdIndex()
    base = _ids(0, 3000)
    for job_id in base:
        keys.append(job_id)
    assert keys.row_of(base[0]) == 0  # built: what follows goes to the tail
    again = [base[5], *_ids(5000, 40), base[5], *_ids(5000, 3), base[2999], *_ids(5001, 2), "legacy-key", base[5]]
    for job_id in again:
        keys.append(job_id)
    everything = base + again
    for job_id in set(everything):
        assert keys.rows_of(job_id) == [row for row, other in enumerate(everything) if other == job_id], job_id
    assert keys.row_of(_ids(5001, 1)[0]) == 3001 + 1


@pytest.mark.parametrize("added", [0, 5, 1024, 1025, 3000])
def test_an_index_extended_by_another_finds_every_row_as_appending_them_one_by_one_does(added: int) -> None:
    """A few rows go to the tail, many drop the sorted index (sorted again when asked): either way every row
    is found, repeats of earlier rows and odd ids included, and the extended rows' ids are their own copy."""
    base = _ids(0, 3000)
    keys = IdIndex()
    for job_id in base:
        keys.append(job_id)
    twin = idindex.twin_of(IdIndex(keys.digests), keys)
    assert keys.row_of(base[0]) == 0  # built
    more = (["legacy-key", base[7], *_ids(7000, added)] if added else [])[:added]
    other = IdIndex()
    for job_id in more:
        other.append(job_id)
    keys.extend(other)
    one_by_one = IdIndex()
    for job_id in base + more:
        one_by_one.append(job_id)
    assert len(keys) == len(base) + len(more) and len(twin) == len(base)
    assert (keys._index is not None) == (added <= 1024)  # max(1024, rows // 16) here
    for job_id in set(base + more + _ids(9000, 3)):
        assert keys.rows_of(job_id) == one_by_one.rows_of(job_id), job_id
    assert [keys.text(row) for row in range(len(keys))] == base + more


def test_a_dump_without_a_sort_holds_the_index_only_when_one_is_built_and_restores_the_same_look_ups() -> None:
    ids = _ids(0, 2000) + ["legacy-key"]
    keys = IdIndex()
    for job_id in ids:
        keys.append(job_id)
    sections, side = keys.dump(sort=False)
    assert "index" not in sections and keys._index is None  # nothing sorted for it
    restored = IdIndex.restore(sections, side)
    assert [restored.row_of(job_id) for job_id in ids] == list(range(len(ids)))
    assert keys.row_of(ids[3]) == 3  # now built: dumped with or without a sort, the same index
    assert keys.dump(sort=False)[0]["index"] is keys.dump()[0]["index"]
    for job_id in _ids(5000, 1100):  # a tail longer than a restore puts back: dumped without it, unsorted
        keys.append(job_id)
    assert "index" not in keys.dump(sort=False)[0] and "index" in keys.dump()[0]


def test_an_unsorted_twin_finds_every_row_and_neither_sees_the_other_change() -> None:
    ids = _ids(0, 3000) + ["legacy-key"]
    keys = IdIndex()
    for job_id in ids:
        keys.append(job_id)
    assert keys.row_of(ids[0]) == 0  # sorted
    twin = idindex.unsorted_twin(keys)
    assert twin._index is None and twin.digests is keys.digests
    keys.append(_ids(5000, 1)[0])
    twin.append("other-key")
    assert [twin.row_of(job_id) for job_id in ids] == list(range(len(ids))) == [keys.row_of(job_id) for job_id in ids]
    assert keys.row_of("other-key") == -1 and twin.row_of(_ids(5000, 1)[0]) == -1
    assert keys.row_of(_ids(5000, 1)[0]) == twin.row_of("other-key") == len(ids)
