"""Reading a gridspec's YAML: keys keep their lines; duplicate keys, alias bombs, tags and bad bytes are one error."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.errors import GridspecError
from batchrun.sweeps._common import Map
from batchrun.sweeps._yaml import read_yaml


def spec(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "g.yml"
    path.write_bytes(data)
    return path


def test_mappings_remember_the_line_of_each_key(tmp_path: Path) -> None:
    data = read_yaml(spec(tmp_path, b"program: t.py\nparameters:\n  a:\n    values: [1, 2]\n"))
    assert isinstance(data, Map) and data.key_lines == {"program": 1, "parameters": 2}
    assert data["parameters"].key_lines == {"a": 3}
    assert data["parameters"]["a"] == {"values": [1, 2]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a: 1\na: 2\n", r"g\.yml:2: duplicate key 'a' \(first on line 1\)"),
        (b"a: !!python/object:os.system x\n", r"g\.yml:1: tag .* is not allowed"),
        (b"a: [1, 2\n", r"g\.yml:\d+: invalid YAML: "),
        (b"a: 1\n\xff\xfe\n", r"g\.yml:2: not UTF-8 text, not a gridspec"),
        (b"a: \x07\n", r"g\.yml:1: invalid YAML: character #x0007 is not allowed"),
        (b"a: &a [*a]\n", r"g\.yml:1: recursive alias"),
    ],
)
def test_bad_yaml_is_one_error_naming_the_line(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(GridspecError, match=message):
        read_yaml(spec(tmp_path, data))


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(GridspecError, match="alias bomb"):
        read_yaml(spec(tmp_path, "\n".join(levels).encode()))


def test_a_missing_gridspec(tmp_path: Path) -> None:
    with pytest.raises(GridspecError, match="no such gridspec"):
        read_yaml(tmp_path / "nope.yml")
