"""zip, when and exclude over random draws (`sweeps.drawn`): what a point may be, and how random search draws it."""

from __future__ import annotations

import random
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from batchrun.errors import GridspecError
from batchrun.sweeps.gridspec import Gridspec, load_gridspec

# optimizer, momentum and nesterov only where optimizer is sgd, lr and warmup zipped, an exclude.
SPACE = (Path(__file__).parent / "data" / "composed" / "space.yml").read_text()
ROWS = {0.1: 100, 0.01: 200, 0.001: 300}


def load(tmp_path: Path, body: str, head: str = "method: random\nrun_cap: 200\nseed: 3\nprogram: t.py\n", name: str = "r.yml") -> Gridspec:
    path = tmp_path / name
    path.write_text(head + textwrap.dedent(body))
    return load_gridspec(path)


def test_random_draws_honour_when_zip_and_exclude(tmp_path: Path) -> None:
    points = list(load(tmp_path, SPACE).iter_points())
    assert len(points) == 200
    for command, point in points:
        assert ("momentum" in point) == (point["optimizer"] == "sgd"), command
        assert ("--momentum=" in command) == ("momentum" in point)
        assert ROWS[point["lr"]] == point["warmup"], command
        assert not (point["layers"] > 4 and point["lr"] > 0.01), command
        assert command == "/usr/bin/env python t.py " + " ".join(f"--{k}={v}" for k, v in sorted(point.items()))
    # Each row of the zip group, each optimizer, drawn about as often as the others.
    rows = Counter(point["lr"] for _, point in points)
    assert set(rows) == set(ROWS) and min(rows.values()) > 35
    assert 70 < Counter(point["optimizer"] for _, point in points)["sgd"] < 130


def test_random_draws_are_the_same_at_every_sweep_and_differ_by_seed(tmp_path: Path) -> None:
    first = list(load(tmp_path, SPACE).iter_commands())
    assert list(load(tmp_path, SPACE).iter_commands()) == first
    other = list(load(tmp_path, SPACE, head="method: random\nrun_cap: 200\nseed: 4\nprogram: t.py\n").iter_commands())
    assert other != first


def test_exclude_alone_keeps_the_draws_of_the_same_spec_without_it(tmp_path: Path) -> None:
    # The walk draws each parameter in order, as a plain random spec does: an excluded draw is only left out.
    body = "parameters:\n  lr: {values: [0.1, 0.01, 0.001]}\n  layers: {min: 1, max: 8}\n  x: {min: 0.0, max: 1.0}\n"
    plain = list(load(tmp_path, body, name="plain.yml").iter_points())
    kept = [c for c, p in plain if not (p["layers"] > 4 and p["lr"] > 0.01)]
    excluded = list(load(tmp_path, body + "exclude: ['layers > 4 and lr > 0.01']\n").iter_commands())
    assert excluded[: len(kept)] == kept and len(excluded) == 200


def test_a_condition_is_walked_after_what_it_reads(tmp_path: Path) -> None:
    # W&B sorts names, so 'a' (conditional on 'b') comes first on the line, but is drawn after 'b'.
    spec = load(tmp_path, "parameters:\n  a: {values: [1, 2], when: 'b == 1'}\n  b: {values: [1, 2]}\n")
    drawn = spec.drawn()
    assert drawn.axes == ((1,), (0,))
    lines = set(spec.iter_commands())
    assert lines == {"/usr/bin/env python t.py --a=1 --b=1", "/usr/bin/env python t.py --a=2 --b=1", "/usr/bin/env python t.py --b=2"}


def test_fits_and_shapes(tmp_path: Path) -> None:
    spec = load(tmp_path, """\
        parameters:
          a: {values: [1, 2]}
          b: {values: [1, 2], when: "a == 1"}
          c: {values: [1, 2], when: "b == 2"}
          x: {values: [10, 20]}
          y: {values: [true, false]}
        zip: [[x, y]]
        exclude: ["a == 2 and x == 20"]
        """)
    drawn = spec.drawn()
    # c needs b (its condition reads b): no shape has c without b.
    assert list(drawn.shapes()) == [(0, 1, 2, 3, 4), (0, 1, 3, 4), (0, 3, 4)]
    # momentum and nesterov have one condition: they are present together or not at all.
    assert list(load(tmp_path, SPACE, name="same.yml").drawn().shapes()) == [(0, 1, 2, 3, 4, 5), (0, 1, 4, 5)]
    assert drawn.fits({"a": 1, "b": 2, "c": 1, "x": 10, "y": True})
    assert drawn.fits({"a": 1, "b": 1, "x": 20, "y": False})
    assert drawn.fits({"a": 2, "x": 10, "y": True})
    for point in [{"a": 1, "b": 1, "c": 1, "x": 10, "y": True},  # c where b != 2
                  {"a": 1, "b": 2, "x": 10, "y": True},  # no c where b == 2
                  {"a": 2, "b": 1, "x": 10, "y": True},  # b where a != 1
                  {"a": 1, "b": 1, "x": 10, "y": False},  # not a row of the zip
                  {"a": 1, "b": 1, "x": 10, "y": 1},  # 1 is not true
                  {"a": 2, "x": 20, "y": False},  # excluded
                  {"a": 2, "x": 10, "y": True, "z": 1},  # no such parameter
                  {"a": 2, "x": 10}]:  # half a zip group
        assert not drawn.fits(point), point
    assert drawn.count_points(100) == 2 * 2 + 2 + 1  # a=1: b=2 with c in 2 values, or b=1; by 2 rows; a=2: one row left
    assert drawn.count_points(7) is None  # not fewer than the limit: it does not bind
    assert load(tmp_path, "parameters:\n  a: {values: [1, 2]}\n  x: {min: 0.0, max: 1.0}\n").drawn().count_points(100) is None


def test_the_walk_asks_only_for_what_applies(tmp_path: Path) -> None:
    drawn = load(tmp_path, SPACE).drawn()
    asked: list[tuple[int, ...]] = []

    def choose(axis: tuple[int, ...], named: object) -> list[object]:
        asked.append(axis)
        return ["adam" if axis == (4,) else 1 for _ in axis]

    assert drawn.named(drawn.walk(choose)) == {"layers": 1, "lr": 1, "optimizer": "adam", "warmup": 1}
    assert asked == [(0,), (1, 5), (4,)]  # layers, the zip group (lr, warmup), optimizer; momentum and nesterov not asked
    # A draw is a point of the space, unless an exclude condition holds there (random search then draws again).
    draws = [drawn.named(drawn.draw(random.Random(seed))) for seed in range(100)]
    assert all(drawn.fits(p) != drawn.excluded(p) for p in draws) and any(map(drawn.excluded, draws))


@pytest.mark.parametrize(("body", "message"), [
    ("parameters:\n  a: {values: [1, 2]}\n  b: {values: [1, 2], when: 'c == 1'}\n",
     "r.yml:7: parameter 'b': when 'c == 1': unknown parameter 'c'"),
    ("parameters:\n  a: {values: [1, 2]}\n  b: {values: [1, 2, 3]}\nzip: [[a, b]]\n",
     "r.yml:8: 'zip': the parameters of a group need as many values each, not a: 2, b: 3"),
    ("parameters:\n  a: {values: [1, 2]}\n  b: {min: 1, max: 2}\nzip: [[a, b]]\n",
     "r.yml:8: 'zip': parameter 'b' has distribution 'int_uniform'; a zip group draws a row of its 'values' lists, each row alike"),
    ("parameters:\n  a: {values: [1, 2]}\n  b: {values: [1, 2], probabilities: [0.5, 0.5]}\nzip: [[a, b]]\n",
     "r.yml:8: 'zip': parameter 'b' has 'values' with 'probabilities'; a zip group draws a row of its 'values' lists, each row alike"),
    ("parameters:\n  a: {values: [1, 2]}\ngrids: [{parameters: {b: {value: 1}}}]\n",
     "r.yml:7: 'grids' makes a union of grids (method grid, or the original format); method random takes zip, exclude and when"),
])
def test_bad_compositions_of_draws(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(GridspecError) as err:
        load(tmp_path, body)
    assert str(err.value) == message.replace("r.yml", str(tmp_path / "r.yml"))
