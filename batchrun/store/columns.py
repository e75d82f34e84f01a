"""The columns of the record table (`recordtable`): one per kind of field of `records.FIELDS`.

Each holds one value per row in an `array` or a `bytearray`; a value its
array cannot hold (None, an int past 32 bits, a NaN) is marked and kept in a
small dict beside it, so that nothing a journal line says is lost. Each
dumps its arrays and side data for the fingerprint's snapshot and loads them
back. Pure: no I/O.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import compress, repeat
from math import copysign
from operator import eq
from typing import Any, TypeAlias

from batchrun.store.records import State

__all__ = ["COLUMN_OF_KIND", "PENDING_CODE", "RUNNING_CODE", "STATE_CODE", "Codes", "Sections", "Flags", "Floats", "Ints", "Live", "Millis", "Names", "States", "Unread"]

# A state's code in the state column, and back.
STATE_CODE: dict[str, int] = {str(state): code for code, state in enumerate(State.ALL)}
_STATE_OF = State.ALL
# A column's arrays by name, as `dump` gives them: its own, not copies (the
# snapshot writes any buffer as it is); byte columns are bytearrays there and
# read back as arrays of "B".
Sections: TypeAlias = "dict[str, array[Any] | bytearray]"
RUNNING_CODE = STATE_CODE[State.RUNNING]
PENDING_CODE = STATE_CODE[State.PENDING]
# The int columns' marker for "None, or a value kept in the column's dict": the narrowest value of each type.
_NONE_OF = {"b": -(2**7), "h": -(2**15), "i": -(2**31)}
_INT_NONE = _NONE_OF["i"]
_FLOAT_NONE = float("nan")


class Ints:
    """Nullable integers in as few bytes a row as the values need: None and values past 32 bits are marked, the latter kept aside.

    A column starts at a byte a row and widens (2, then 4 bytes) the first
    time a value needs it: exit statuses, attempts and requeues mostly fit a
    byte, and a million jobs' four such columns then hold 4 MB, not 16. The
    marker of None is the narrowest value of the array's type.
    """

    __slots__ = ("default", "none", "odd", "values")

    def __init__(self, default: int | None) -> None:
        self.values = array("b")
        self.none = _NONE_OF["b"]
        self.odd: dict[int, int] = {}
        self.default = default

    def append(self) -> None:
        self.values.append(self.none if self.default is None else self.default)

    def add_nones(self, count: int) -> None:
        """Add `count` rows of None (to an empty column)."""
        self.values.extend(array(self.values.typecode, [self.none]) * count)

    def get(self, row: int) -> int | None:
        value = self.values[row]
        return value if value != self.none else self.odd.get(row)

    def dump(self) -> tuple[Sections, Any]:
        return {"": self.values}, {str(row): value for row, value in self.odd.items()}

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        values = sections[""]
        if values.typecode not in _NONE_OF:
            raise ValueError(f"an int column of type {values.typecode!r}")
        self.values, self.none = values, _NONE_OF[values.typecode]
        self.odd = {int(row): int(value) for row, value in side.items()}

    def set(self, row: int, value: int | None) -> None:
        if value is not None and self.none < value <= -self.none - 1:
            self.values[row] = value
            if self.odd:
                self.odd.pop(row, None)
        elif value is not None and _INT_NONE < value < 2**31:
            self._widen(value)
            self.set(row, value)
        else:
            self.values[row] = self.none
            if value is None:
                self.odd.pop(row, None)
            else:
                self.odd[row] = value

    def _widen(self, value: int) -> None:
        """Hold `value` from now on: the same values, in the narrowest wider type that takes it (its markers moved)."""
        code = next(code for code, none in _NONE_OF.items() if none < value <= -none - 1)
        old, none = self.values, _NONE_OF[code]
        self.values = array(code, old)
        for row in compress(range(len(old)), map(eq, old, repeat(self.none))):
            self.values[row] = none
        self.none = none


class Millis:
    """Nullable floats that journal lines give to the millisecond (CPU seconds, `%.3f`): a whole number of them, in an `Ints`.

    `m / 1000` is the float nearest to m thousandths, as is the float a
    `%.3f` text reads back as, so the values come back bit for bit; any other
    value (more digits, NaN, past 24 days) is kept aside. Half or a quarter of
    the 8 bytes a row of `Floats`.
    """

    __slots__ = ("ints", "odd")

    def __init__(self, default: Any = None) -> None:
        self.ints = Ints(None)
        self.odd: dict[int, float] = {}

    def append(self) -> None:
        self.ints.append()

    def add_nones(self, count: int) -> None:
        """Add `count` rows of None (to an empty column)."""
        self.ints.add_nones(count)

    def get(self, row: int) -> float | None:
        millis = self.ints.get(row)
        return millis / 1000 if millis is not None else self.odd.get(row)

    def dump(self) -> tuple[Sections, Any]:
        ints, odd = self.ints.dump()
        return ints, {"ints": odd, "odd": {str(row): value for row, value in self.odd.items()}}

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        self.ints.load(sections, side["ints"])
        self.odd = {int(row): float(value) for row, value in side["odd"].items()}

    def set(self, row: int, value: float | None) -> None:
        millis = round(value * 1000) if value is not None and value == value and abs(value) < 2e6 else None
        if millis is not None and millis / 1000 == value and (millis or copysign(1, value) > 0):  # -0.0 aside
            self.ints.set(row, millis)
            if self.odd:
                self.odd.pop(row, None)
        else:
            self.ints.set(row, None)
            if value is None:
                self.odd.pop(row, None)
            else:
                self.odd[row] = value


class Floats:
    """Nullable floats: 8 bytes a row; NaN marks None, and a real NaN is kept aside."""

    __slots__ = ("odd", "values")

    def __init__(self, default: Any = None) -> None:
        self.values = array("d")
        self.odd: dict[int, float] = {}

    def append(self) -> None:
        self.values.append(_FLOAT_NONE)

    def add_nones(self, count: int) -> None:
        """Add `count` rows of None (to an empty column)."""
        self.values.extend(array("d", [_FLOAT_NONE]) * count)

    def get(self, row: int) -> float | None:
        value = self.values[row]
        return value if value == value else self.odd.get(row)

    def dump(self) -> tuple[Sections, Any]:
        return {"": self.values}, {str(row): value for row, value in self.odd.items()}

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        self.values, self.odd = sections[""], {int(row): float(value) for row, value in side.items()}

    def set(self, row: int, value: float | None) -> None:
        if value is not None and value == value:
            self.values[row] = value
            if self.odd:
                self.odd.pop(row, None)
        else:
            self.values[row] = _FLOAT_NONE
            if value is None:
                self.odd.pop(row, None)
            else:
                self.odd[row] = value


class Names:
    """Texts of few distinct values (hosts): each kept once, a byte a row (0 for None), 2 past 255 of them."""

    __slots__ = ("codes", "names", "values")

    def __init__(self, default: Any = None) -> None:
        self.values = array("B")
        self.names: list[str | None] = [None]
        self.codes: dict[str | None, int] = {None: 0}

    def append(self) -> None:
        self.values.append(0)

    def get(self, row: int) -> str | None:
        return self.names[self.values[row]]

    def dump(self) -> tuple[Sections, Any]:
        return {"": self.values}, self.names[1:]

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        self.values = sections[""]
        self.names = [None, *(str(name) for name in side)]
        self.codes = {name: code for code, name in enumerate(self.names)}

    def set(self, row: int, value: str | None) -> None:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.names)
            self.names.append(value)
            wider = "H" if code == 2**8 else "I" if code == 2**16 else None
            if wider is not None and self.values.itemsize < array(wider).itemsize:
                self.values = array(wider, self.values)
        self.values[row] = code


class Unread:
    """A column a read left unread from the snapshot (`RecordTable.restore(skip=...)`): None for each row it had.

    A read command that shows none of a column (what each run used, in
    `status`'s table) need not hold it: 24 MB at a million jobs. Rows the
    journal adds after the snapshot, and values set, make it a real column
    (`Ints` or `Floats`, given empty) from then on.
    """

    __slots__ = ("count", "inner")

    def __init__(self, inner: Ints | Floats | Millis, count: int) -> None:
        self.inner, self.count = inner, count

    def _real(self) -> Ints | Floats | Millis:
        if self.count >= 0:
            self.inner.add_nones(self.count)
            self.count = -1
        return self.inner

    def append(self) -> None:
        if self.count >= 0:
            self.count += 1
        else:
            self.inner.append()

    def get(self, row: int) -> Any:
        return None if self.count >= 0 else self.inner.get(row)

    def set(self, row: int, value: Any) -> None:
        if value is not None or self.count < 0:
            self._real().set(row, value)

    def dump(self) -> tuple[Sections, Any]:
        return self._real().dump()


class Live:
    """Values only a running job has (its slot, its pid): by row, dropped when it stops running."""

    __slots__ = ("values",)

    def __init__(self, default: Any = None) -> None:
        self.values: dict[int, Any] = {}

    def append(self) -> None:
        pass

    def get(self, row: int) -> Any:
        return self.values.get(row)

    def set(self, row: int, value: Any) -> None:
        if value is None:
            self.values.pop(row, None)
        else:
            self.values[row] = value

    def dump(self) -> tuple[Sections, Any]:
        return {}, [[row, value] for row, value in self.values.items()]

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        self.values = {int(row): value for row, value in side}


class Codes:
    """A list of exit statuses per row: how many (0, 1, more) in a byte, the last in an int column, longer lists aside."""

    __slots__ = ("count", "last", "longer")

    def __init__(self, default: Any = None) -> None:
        self.count = bytearray()
        self.last = Ints(None)
        self.longer: dict[int, list[int | None]] = {}

    def append(self) -> None:
        self.count.append(0)
        self.last.append()

    def get(self, row: int) -> list[int | None]:
        count = self.count[row]
        if count == 0:
            return []
        if count == 1:
            return [self.last.get(row)]
        return list(self.longer[row])

    def set(self, row: int, value: Iterable[int | None]) -> None:
        codes = list(value)
        self.longer.pop(row, None)
        self.count[row] = min(len(codes), 2)
        self.last.set(row, codes[-1] if codes else None)
        if len(codes) > 1:
            self.longer[row] = codes

    def dump(self) -> tuple[Sections, Any]:
        last, odd = self.last.dump()
        return {"count": self.count, "last": last[""]}, {"last": odd, "longer": {str(row): codes for row, codes in self.longer.items()}}

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        self.count = bytearray(sections["count"])
        self.last.load({"": sections["last"]}, side["last"])
        self.longer = {int(row): list(codes) for row, codes in side["longer"].items()}

    def add(self, row: int, code: int | None) -> None:
        count = self.count[row]
        if count == 0:
            self.count[row] = 1
        elif count == 1:
            self.count[row] = 2
            self.longer[row] = [self.last.get(row), code]
        else:
            self.longer[row].append(code)
        self.last.set(row, code)


class Flags:
    """Booleans: a byte a row."""

    __slots__ = ("values",)

    def __init__(self, default: Any = None) -> None:
        self.values = bytearray()

    def append(self) -> None:
        self.values.append(0)

    def get(self, row: int) -> bool:
        return bool(self.values[row])

    def set(self, row: int, value: bool) -> None:
        self.values[row] = 1 if value else 0

    def dump(self) -> tuple[Sections, Any]:
        return {"": self.values}, None

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        self.values = bytearray(sections[""])


class States:
    """A job's state: its code (`STATE_CODE`) in a byte."""

    __slots__ = ("values",)

    def __init__(self, default: Any = None) -> None:
        self.values = bytearray()

    def append(self) -> None:
        self.values.append(PENDING_CODE)

    def get(self, row: int) -> str:
        return _STATE_OF[self.values[row]]

    def set(self, row: int, value: str) -> None:
        self.values[row] = STATE_CODE[value]

    def dump(self) -> tuple[Sections, Any]:
        return {"": self.values}, [str(state) for state in _STATE_OF]

    def load(self, sections: dict[str, array[Any]], side: Any) -> None:
        if side != [str(state) for state in _STATE_OF]:
            raise ValueError("the states are not this version's")
        self.values = bytearray(sections[""])


COLUMN_OF_KIND: dict[str, Any] = {"state": States, "int": Ints, "float": Floats, "millis": Millis, "name": Names, "live": Live, "codes": Codes, "flag": Flags}
