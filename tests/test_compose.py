"""Gridspecs that compose (zip, exclude, when, grids) through `batchrun sweep`, grids and random draws, and the safe condition evaluator."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from batchrun.errors import GridspecError
from batchrun.sweeps.condition import compile_condition

RunCli = Callable[..., tuple[int, str, str]]

COMPOSED = """\
program: python train.py
parameters:
  optimizer:
    values: [sgd, adam]
  momentum:
    values: [0.9, 0.99]
    when: "optimizer == 'sgd'"
  lr:
    values: [0.1, 0.01]
  warmup:
    values: [100, 200]
  layers:
    values: [2, 8]
zip: [[lr, warmup]]
exclude: ["layers > 4 and lr > 0.01"]
"""


def sweep(workdir: Path, run_cli: RunCli, text: str) -> list[str]:
    (workdir / "g.yml").write_text(text)
    code, out, err = run_cli("sweep", "g.yml")
    assert code == 0, err
    lines = (workdir / "g.runfile").read_text().splitlines()
    assert run_cli("sweep", "g.yml", "--count") == (0, f"{len(lines)}\n", "")
    return lines


def test_zip_exclude_and_when_together(workdir: Path, run_cli: RunCli) -> None:
    assert sweep(workdir, run_cli, COMPOSED) == [
        "python train.py --optimizer=sgd --momentum=0.9 --lr=0.1 --warmup=100 --layers=2",
        "python train.py --optimizer=sgd --momentum=0.9 --lr=0.01 --warmup=200 --layers=2",
        "python train.py --optimizer=sgd --momentum=0.9 --lr=0.01 --warmup=200 --layers=8",
        "python train.py --optimizer=sgd --momentum=0.99 --lr=0.1 --warmup=100 --layers=2",
        "python train.py --optimizer=sgd --momentum=0.99 --lr=0.01 --warmup=200 --layers=2",
        "python train.py --optimizer=sgd --momentum=0.99 --lr=0.01 --warmup=200 --layers=8",
        "python train.py --optimizer=adam --lr=0.1 --warmup=100 --layers=2",
        "python train.py --optimizer=adam --lr=0.01 --warmup=200 --layers=2",
        "python train.py --optimizer=adam --lr=0.01 --warmup=200 --layers=8",
    ]


def test_a_union_of_grids_drops_repeats(workdir: Path, run_cli: RunCli) -> None:
    lines = sweep(workdir, run_cli, """\
program: python train.py
parameters:
  seed: {values: [1, 2]}
grids:
  - parameters: {model: {value: small}, lr: {values: [0.1, 0.01]}}
  - parameters: {model: {value: big}, lr: {values: [0.001, 0.1]}}
    exclude: ["seed == 2"]
  - parameters: {model: {value: small}, lr: {values: [0.1]}}
""")
    assert lines == [
        "python train.py --seed=1 --model=small --lr=0.1", "python train.py --seed=1 --model=small --lr=0.01",
        "python train.py --seed=2 --model=small --lr=0.1", "python train.py --seed=2 --model=small --lr=0.01",
        "python train.py --seed=1 --model=big --lr=0.001", "python train.py --seed=1 --model=big --lr=0.1",
    ]


def test_wandb_grid_with_conditions_in_wandbs_order(workdir: Path, run_cli: RunCli) -> None:
    lines = sweep(workdir, run_cli, """\
method: grid
program: train.py
parameters:
  optimizer: {values: [sgd, adam]}
  momentum: {values: [0.9], when: "optimizer == 'sgd'"}
  lr: {values: [0.1, 0.01]}
exclude: ["optimizer == 'adam' and lr < 0.05"]
""")
    assert lines == [
        "/usr/bin/env python train.py --lr=0.1 --momentum=0.9 --optimizer=sgd",
        "/usr/bin/env python train.py --lr=0.1 --optimizer=adam",
        "/usr/bin/env python train.py --lr=0.01 --momentum=0.9 --optimizer=sgd",
    ]


def test_results_see_the_composed_points(workdir: Path, run_cli: RunCli) -> None:
    (workdir / "g.yml").write_text("program: 'true'\nparameters:\n  a: {values: [1, 2]}\n  b: {values: [x, y], when: 'a == 1'}\n")
    code, _, err = run_cli("launch", "g.yml", "-q")
    assert code == 0, err
    code, out, _ = run_cli("results", "g.yml", "--csv")
    assert code == 0
    rows = out.splitlines()
    assert len(rows) == 4  # a=1 with b=x and b=y, a=2 without b
    assert rows[-1].count(",,") or rows[-1].endswith(",")  # b is empty where it does not apply


@pytest.mark.parametrize(("spec", "message"), [
    ("exclude: ['__import__(\"os\").system(\"x\")']", "g.yml:4: exclude '__import__(\"os\").system(\"x\")': a function call is not allowed (comparisons, and/or/not, arithmetic, parameter names, numbers, text, lists)"),
    ("exclude: ['b > 1']", "g.yml:4: exclude 'b > 1': unknown parameter 'b'"),
    ("exclude: ['a >']", "g.yml:4: exclude 'a >': not an expression (invalid syntax)"),
    ("exclude: ['a.__class__ == 1']", "g.yml:4: exclude 'a.__class__ == 1': unknown parameter 'a.__class__'"),
    ("exclude: ['a ** 10 ** 10 > 1']", "g.yml:4: exclude 'a ** 10 ** 10 > 1': cannot evaluate at a=2: 2 ** 10000000000 is too large"),
    ("zip: [[a, c]]", "g.yml:5: 'zip': the parameters of a group need as many values each, not a: 2, c: 3"),
    ("zip: [[a, nope]]", "g.yml:4: 'zip' names 'nope', which is not a parameter"),
])
def test_bad_compositions_are_one_line(spec: str, message: str, workdir: Path, run_cli: RunCli) -> None:
    extra = "  c: {values: [1, 2, 3]}\n" if "c]" in spec else ""
    (workdir / "g.yml").write_text(f"program: x\nparameters:\n  a: {{values: [2, 3]}}\n{extra}{spec}\n")
    code, out, err = run_cli("sweep", "g.yml")
    assert code == 2 and out == ""
    assert err == f"batchrun: error: {message}\n"
    assert len(err.splitlines()) == 1 and not (workdir / "g.runfile").exists()


@pytest.mark.parametrize(("text", "point", "holds"), [
    ("layers > 4 and lr > 0.01", {"layers": 8, "lr": 0.1}, True),
    ("layers > 4 and lr > 0.01", {"layers": 2, "lr": 0.1}, False),
    ("optimizer in ['sgd', 'rmsprop']", {"optimizer": "sgd"}, True),
    ("optimizer not in ('sgd',)", {"optimizer": "sgd"}, False),
    ("not (a == 1 or b == 2)", {"a": 1, "b": 0}, False),
    ("a * 2 + 1 >= 5 and a % 2 == 0", {"a": 2}, True),
    ("1 < a < 3", {"a": 2}, True),
    ("flag == true and x == null", {"flag": True, "x": None}, True),
    ("opt.lr > 0.1", {"opt.lr": 0.5}, True),
    ("momentum > 0.5", {"optimizer": "adam"}, False),
])
def test_conditions(text: str, point: dict[str, object], holds: bool) -> None:
    names = ["layers", "lr", "optimizer", "a", "b", "flag", "x", "opt.lr", "momentum"]
    assert compile_condition(text, names, Path("g.yml"), 3, "exclude").holds(point) is holds


@pytest.mark.parametrize("text", ["open('x')", "[x for x in a]", "a if b else c", "lambda: 1", "a[0]", "{'a': 1}", "a is None", "a & b", "~a", "f'{a}'", "(a := 1)"])
def test_conditions_refuse_anything_else(text: str) -> None:
    with pytest.raises(GridspecError, match="is not allowed"):
        compile_condition(text, ["a", "b", "c", "x"], Path("g.yml"), 3, "exclude")


def test_a_condition_that_cannot_compare_names_the_point() -> None:
    condition = compile_condition("a < 3", ["a"], Path("g.yml"), 3, "exclude")
    with pytest.raises(GridspecError, match=r"g.yml:3: exclude 'a < 3': cannot evaluate at a='x'"):
        condition.holds({"a": "x"})


def test_random_and_bayes_never_run_an_excluded_point(workdir: Path, run_cli: RunCli) -> None:
    space = "parameters:\n  lr: {values: [0.1, 0.01, 0.001]}\n  layers: {values: [2, 8]}\nexclude: ['layers > 4 and lr > 0.01']\n"
    (workdir / "r.yml").write_text("method: random\nrun_cap: 30\nprogram: train.py\n" + space)
    assert run_cli("sweep", "r.yml")[0] == 0
    lines = (workdir / "r.runfile").read_text().splitlines()
    assert len(lines) == 30 and not [line for line in lines if "--layers=8" in line and "--lr=0.1 " in line + " "]
    (workdir / "b.yml").write_text("method: bayes\nmetric: {name: loss, goal: minimize}\nrun_cap: 6\ncommand: ['true', '${args}']\n" + space)
    code, _, err = run_cli("launch", "b.yml", "-j", "2", "-q")
    assert code == 0, err
    points = [line for line in (workdir / "b.runfile").read_text().splitlines() if not line.startswith("#")]
    # Five points are left once the excluded one is taken out: the search uses them up and stops.
    assert sorted(points) == sorted(f"true --layers={n} --lr={lr}" for n in (2, 8) for lr in (0.1, 0.01, 0.001) if not (n == 8 and lr == 0.1))


# optimizer, momentum and nesterov only where optimizer is sgd, lr and warmup zipped, an exclude.
RANDOM = "method: random\nrun_cap: 40\nseed: 5\ncommand: ['true', '${args}']\n" + (Path(__file__).parent / "data" / "composed" / "space.yml").read_text()


def test_random_with_when_and_zip_gives_the_same_lines_at_every_sweep(workdir: Path, run_cli: RunCli) -> None:
    other = sweep(workdir, run_cli, RANDOM.replace("seed: 5", "seed: 6"))
    lines = sweep(workdir, run_cli, RANDOM)  # --count: run_cap, the lines drawn
    assert len(lines) == 40 and lines == sweep(workdir, run_cli, RANDOM) and lines != other
    rows = {"--lr=0.1 ": "--warmup=100", "--lr=0.01 ": "--warmup=200", "--lr=0.001 ": "--warmup=300"}
    for line in lines:
        assert ("--momentum=" in line) == ("--optimizer=sgd" in line), line
        assert [warmup for lr, warmup in rows.items() if lr in line] == [w for w in rows.values() if w in line], line
        layers = int(line.split("--layers=")[1].split()[0])
        assert not (layers > 4 and "--lr=0.1 " in line), line
    assert {"--optimizer=sgd" in line for line in lines} == {True, False}
    code, _, err = run_cli("launch", "g.yml", "-q")
    assert code == 0, err
    code, out, _ = run_cli("results", "g.yml", "--csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(table) == len(set(lines))  # a repeated draw is one job
    for row in table:
        assert (row["momentum"] == "") == (row["nesterov"] == "") == (row["optimizer"] == "adam"), row


@pytest.mark.parametrize(("edit", "message"), [
    (("optimizer == 'sgd'", "optimizer == 'sgd' and lr2 > 0"),
     "g.yml:7: parameter 'momentum': when \"optimizer == 'sgd' and lr2 > 0\": unknown parameter 'lr2' (did you mean 'lr'?)"),
    (("warmup: {values: [100, 200, 300]}", "warmup: {values: [100, 200, 300, 400]}"),
     "g.yml:12: 'zip': the parameters of a group need as many values each, not lr: 3, warmup: 4"),
    (("zip: [[lr, warmup]]", "zip: [[lr, layers]]"),
     "g.yml:12: 'zip': parameter 'layers' has distribution 'int_uniform'; a zip group draws a row of its 'values' lists, each row alike"),
])
def test_bad_compositions_of_a_random_spec_are_one_line(workdir: Path, run_cli: RunCli, edit: tuple[str, str], message: str) -> None:
    (workdir / "g.yml").write_text(RANDOM.replace(*edit))
    for args in (("sweep", "g.yml"), ("sweep", "g.yml", "--count"), ("launch", "g.yml")):
        assert run_cli(*args) == (2, "", f"batchrun: error: {message}\n"), args
    assert not (workdir / "g.runfile").exists()
