"""The pieces both gridspec dialects share: exact ranges, number reading, checks and messages."""

from __future__ import annotations

from typing import NoReturn

import pytest

from batchrun.sweeps._common import (
    Map,
    Param,
    arange,
    as_number,
    check_name,
    check_writable,
    kind,
    one_line,
    quote_arg,
    render_arg,
    render_word,
    show,
    unknown,
    values_list,
)


class Failed(Exception):
    pass


def fail(message: str, line: int | None = None) -> NoReturn:
    raise Failed(message, line)


def test_arange_is_exact_for_decimal_steps() -> None:
    assert list(arange(0, 0.5, 0.1)) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert arange(0, 10, 3) == range(0, 10, 3)
    assert len(arange(1, 1.000001, 1e-7)) == 10


@pytest.mark.parametrize(
    ("value", "number"),
    [("1e-5", 1e-5), ("12", 12), (3, 3), (2.5, 2.5), (True, None), ("inf", None), (float("nan"), None), ("x", None), (None, None)],
)
def test_as_number(value: object, number: float | None) -> None:
    assert as_number(value) == number
    assert type(as_number(value)) is type(number)


def test_messages_are_one_short_line() -> None:
    assert one_line("a\n  b\tc ") == "a b c"
    assert show("x" * 100) == repr("x" * 100)[:57] + "..."
    assert [kind(v) for v in ("t", 1, None, True, {}, [])] == ["the text 't'", "1", "null", "a boolean", "a mapping", "a list"]
    assert unknown("programm", ["program", "parameters"]) == "unknown key 'programm' (did you mean 'program'?)"


def test_checks_name_the_line() -> None:
    assert check_name("lr.x", 3, fail) == "lr.x"
    with pytest.raises(Failed, match="YAML boolean") as info:
        check_name(True, 4, fail)
    assert info.value.args[1] == 4
    with pytest.raises(Failed, match="line break"):
        check_writable("parameter 'a'", ["ok", "two\nlines"], 5, fail)
    body = Map()
    body["values"] = []
    with pytest.raises(Failed, match="'values' is an empty list"):
        values_list("parameter 'a'", body, 6, fail)


def test_rendering_quotes_only_what_sh_would_change() -> None:
    param = Param("a", None)
    assert render_arg(param, "x~y#z") == "x~y#z"
    assert render_arg(param, "a b") == "'a b'"
    assert render_word(param, "it's") == "'it'\"'\"'s'"
    assert quote_arg("$HOME") == "'$HOME'"
