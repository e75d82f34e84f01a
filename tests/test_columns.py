"""The record table's columns (`store.columns`): values come back as they were set, in as few bytes as they need."""

from __future__ import annotations

import random
from array import array
from pathlib import Path

import pytest

from batchrun.store import jobsnapshot
from batchrun.store.columns import Floats, Ints, Millis, Names, Unread

_INT_CASES = [0, 1, -9, 127, -127, None, 128, -128, 300, 32_767, -32_768, 70_000, 2**31 - 1, -(2**31), 2**31, -(2**40), None, 5]


def _round_trip(column: Ints | Millis) -> Ints | Millis:
    """The column as the snapshot gives it back: dumped, then loaded into a new one."""
    sections, side = column.dump()
    again = type(column)(None)
    again.load({name: array(values.typecode, values) for name, values in sections.items()}, side)
    return again


def test_ints_start_at_a_byte_a_row_and_widen_keeping_every_value_and_none() -> None:
    column = Ints(None)
    held: list[int | None] = []
    for value in _INT_CASES:
        column.append()
        column.set(len(held), value)
        held.append(value)
        assert [column.get(row) for row in range(len(held))] == held, value
    assert column.values.itemsize == 4  # 70,000 needed 4 bytes; past 32 bits the value is kept aside
    assert [_round_trip(column).get(row) for row in range(len(held))] == held


@pytest.mark.parametrize(("values", "itemsize"), [([0, 1, 2, -15, None], 1), ([0, 255, None], 2), ([0, 40_000, None], 4)])
def test_ints_hold_the_narrowest_type_that_takes_their_values(values: list[int | None], itemsize: int) -> None:
    column = Ints(0)
    for row, value in enumerate(values):
        column.append()
        column.set(row, value)
    assert column.values.itemsize == itemsize
    assert [column.get(row) for row in range(len(values))] == values
    assert [_round_trip(column).get(row) for row in range(len(values))] == values


def test_ints_read_back_the_previous_snapshots_four_byte_columns_and_refuse_other_types() -> None:
    column = Ints(None)
    column.load({"": array("i", [3, -(2**31), 7])}, {"1": 2**40})
    assert [column.get(row) for row in range(3)] == [3, 2**40, 7]
    column.set(0, None)
    assert column.get(0) is None and column.values.itemsize == 4
    with pytest.raises(ValueError, match="int column"):
        Ints(None).load({"": array("d", [1.0])}, {})


def test_millis_give_back_every_three_decimal_time_bit_for_bit_and_keep_other_values_aside() -> None:
    rng = random.Random(28)
    # What a U line says (`%.3f` of getrusage's seconds), read back as the journal's replay reads it.
    texts = ["0.000", "0.001", "0.999", "1.005", "32.767", "32.768", "86399.999", "1999999.999"]
    texts += [f"{rng.uniform(0, 10 ** rng.randint(0, 6)):.3f}" for _ in range(2000)]
    odd = [0.1234, float("nan"), 3e9, -0.0005, 1e-9, -0.0]
    column = Millis()
    values = [float(text) for text in texts] + odd + [None]
    for row, value in enumerate(values):
        column.append()
        column.set(row, value)
    got = [column.get(row) for row in range(len(values))]
    again = _round_trip(column)
    for value, first, second in zip(values, got, [again.get(row) for row in range(len(values))], strict=True):
        if value is not None and value != value:
            assert first != first and second != second  # NaN: kept aside, still NaN
        else:
            assert first == value and second == value and (value is None or repr(first) == repr(value))
    assert len(column.odd) == len(odd)  # every time but the odd ones is a whole number of milliseconds
    assert column.ints.values.itemsize == 4


def test_names_take_a_byte_a_row_until_the_256th_name() -> None:
    column = Names()
    for row in range(300):
        column.append()
        column.set(row, f"host{row}" if row else None)
        if row == 255:
            assert column.values.itemsize == 1
    assert column.values.itemsize == 2
    assert [column.get(row) for row in range(300)] == [None, *(f"host{row}" for row in range(1, 300))]


@pytest.mark.parametrize("inner", [Ints, Millis, Floats])
def test_an_unread_column_of_each_kind_becomes_real_with_nones_for_its_rows(inner: type) -> None:
    column = Unread(inner(None), 3)
    column.append()
    column.set(3, 2.5 if inner is not Ints else 40_000)
    assert [column.get(row) for row in range(4)] == [None, None, None, 2.5 if inner is not Ints else 40_000]


def test_a_snapshot_of_the_previous_format_is_not_read(tmp_path: Path) -> None:
    # Version 1 held 4-byte ints and 8-byte CPU seconds: a relaunch takes its full path once (and
    # the previous release takes its full path on a version 2).
    assert jobsnapshot.write_sections(tmp_path, "t", {"a": array("b", [1, 2])}, {})
    assert jobsnapshot.read_sections(tmp_path, "t") is not None
    path = tmp_path / jobsnapshot.SNAPSHOT_NAME
    data = path.read_bytes()
    assert data.startswith(b"batchrun-jobs 2 ")
    path.write_bytes(data.replace(b"batchrun-jobs 2 ", b"batchrun-jobs 1 ", 1))
    assert jobsnapshot.read_sections(tmp_path, "t") is None
