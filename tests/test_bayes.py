"""The bayes proposer: W&B spaces in Optuna, commands back to points, W&B's semantics."""

from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from batchrun.errors import BatchrunError
from batchrun.sweeps.bayes import INSTALL_HINT, BayesSpec, FinishedRun, next_commands, observed_values, propose, sweep_state
from batchrun.sweeps.gridspec import load_gridspec
from batchrun.sweeps.objective import read_metrics
from batchrun.sweeps.wandb_space import search_space

EVERY_DISTRIBUTION = """
    parameters:
      cat: {values: [a, 'b c', 3, 4.5, true]}
      weighted: {values: [x, y], probabilities: [0.2, 0.8]}
      const: {value: 7}
      one: {values: [only]}
      int: {min: -2, max: 5}
      uni: {min: -1.5, max: 2.5}
      qu: {distribution: q_uniform, min: 0, max: 10, q: 0.5}
      qui: {distribution: q_uniform, min: 0, max: 10, q: 2}
      lu: {distribution: log_uniform, min: -3, max: 1}
      luv: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
      qluv: {distribution: q_log_uniform_values, min: 1, max: 1000, q: 1}
      ilu: {distribution: inv_log_uniform, min: 0, max: 4}
      iluv: {distribution: inv_log_uniform_values, min: 0.5, max: 8}
      norm: {distribution: normal, mu: 1, sigma: 2}
      qnorm: {distribution: q_normal, mu: 0, sigma: 5, q: 0.25}
      lnorm: {distribution: log_normal, mu: 0, sigma: 0.5}
      beta: {distribution: beta, a: 2, b: 5}
      nested: {parameters: {lr: {min: 0.0, max: 1.0}}}
"""
def job_id_of(command: str) -> str:
    return hashlib.sha256(command.encode()).hexdigest()[:16]


HEAD = "method: bayes\nmetric: {name: loss, goal: minimize}\nrun_cap: 20\n"


def bayes_spec(tmp_path: Path, body: str, head: str = HEAD, **extra: str) -> BayesSpec:
    path = tmp_path / "spec.yml"
    path.write_text(head + "".join(f"{k}: {v}\n" for k, v in extra.items()) + textwrap.dedent(body))
    return BayesSpec(load_gridspec(path))


def random_spec_draws(tmp_path: Path, body: str, command: str) -> list[str]:
    path = tmp_path / "random.yml"
    path.write_text(f"method: random\nrun_cap: 30\nseed: 3\ncommand: {command}\n" + textwrap.dedent(body))
    return list(load_gridspec(path).iter_commands())


COMMANDS = [
    "[t.py, '${args}']",
    "[t.py, '${args_json}']",
    "[t.py, '${args_no_boolean_flags}']",
    "['${args_no_boolean_flags}', t.py]",
    "[t.py, '${args_no_equals}', '--uni-again=${uni}']",
    "['${env}', '${interpreter}', t.py, '${args_no_hyphens}']",
    "[t.py, '${args_override_hydra}', 'x${int}y']",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_random_line_parses_back_to_its_point(tmp_path: Path, command: str) -> None:
    # Lines W&B random search writes for the same space are points of the bayes spec.
    spec = bayes_spec(tmp_path, EVERY_DISTRIBUTION, command=command)
    for line in random_spec_draws(tmp_path, EVERY_DISTRIBUTION, command):
        params = spec.params_of(line)
        assert params is not None, line
        assert spec.command(params) == line


@pytest.mark.parametrize("command", COMMANDS)
def test_proposals_render_and_parse_back(tmp_path: Path, command: str) -> None:
    spec = bayes_spec(tmp_path, EVERY_DISTRIBUTION, command=command)
    proposals = propose(spec, [], [], 3)
    finished = [FinishedRun(p, [float(i)], True) for i, p in enumerate(proposals)]
    proposals += propose(spec, finished, [], 3)
    assert len({spec.command(p) for p in proposals}) == 6
    for params in proposals:
        assert spec.params_of(spec.command(params)) == params


def test_proposed_values_are_values_w_and_b_could_draw(tmp_path: Path) -> None:
    spec = bayes_spec(tmp_path, EVERY_DISTRIBUTION, command="[t.py, '${args}']")
    points: list[dict[str, Any]] = []
    finished: list[FinishedRun] = []
    for i in range(12):
        (point,) = propose(spec, finished, [], 1)
        points.append(point)
        finished.append(FinishedRun(point, [random.Random(i).random()], True))
    for p in points:
        assert p["cat"] in ["a", "b c", 3, 4.5, True] and p["weighted"] in ["x", "y"]
        assert p["const"] == 7 and p["one"] == "only"
        assert isinstance(p["int"], int) and -2 <= p["int"] <= 5
        assert -1.5 <= p["uni"] <= 2.5 and 0 <= p["nested.lr"] <= 1
        assert p["qu"] in [k / 2 for k in range(21)] and isinstance(p["qu"], float)
        assert p["qui"] in range(0, 11, 2) and isinstance(p["qui"], int)
        assert math.exp(-3) <= p["lu"] <= math.exp(1)
        assert 0.0001 <= p["luv"] <= 0.1 and p["qluv"] in range(1, 1001)
        assert math.exp(-4) <= p["ilu"] <= 1 and 0.5 <= p["iluv"] <= 8
        assert p["qnorm"] * 4 == int(p["qnorm"] * 4) and p["lnorm"] > 0 and 0 <= p["beta"] <= 1


def test_lines_of_other_specs_are_not_points(tmp_path: Path) -> None:
    spec = bayes_spec(tmp_path, "parameters: {a: {values: [1, 2]}, x: {min: 0.0, max: 1.0}}", program="t.py")
    assert spec.params_of("/usr/bin/env python t.py --a=1 --x=0.5") == {"a": 1, "x": 0.5}
    for line in ["/usr/bin/env python t.py --a=3 --x=0.5", "/usr/bin/env python t.py --a=1 --x=0.50",
                 "/usr/bin/env python t.py --a=1 --x=zz", "echo hi", "/usr/bin/env python t.py --a=1 --x=0.5 "]:
        assert spec.params_of(line) is None, line
    # Out of range (a hand-written line): still its point; Optuna sees it at the bound.
    assert spec.params_of("/usr/bin/env python t.py --a=1 --x=2.0") == {"a": 1, "x": 2.0}
    assert spec.to_internal({"a": 1, "x": 2.0}) == {"a": 0, "x": 1.0}


def test_same_results_give_the_same_proposals_in_any_order(tmp_path: Path) -> None:
    spec = bayes_spec(tmp_path, "parameters: {a: {values: [1, 2, 3]}, x: {min: 0.0, max: 1.0}}", program="t.py")
    first = propose(spec, [], [], 4)
    assert propose(spec, [], [], 4) == first
    finished = [FinishedRun(p, [p["x"]], i != 2) for i, p in enumerate(first)]
    again = propose(spec, finished, first[:1], 2)
    assert propose(spec, finished[::-1], first[:1], 2) == again
    # A different seed or different results change them.
    assert propose(bayes_spec(tmp_path, "parameters: {a: {values: [1, 2, 3]}, x: {min: 0.0, max: 1.0}}",
                              program="t.py", seed="5"), finished, first[:1], 2) != again
    assert propose(spec, finished[:3], first[:1], 2) != again


def test_running_points_are_not_proposed_again(tmp_path: Path) -> None:
    # A small discrete space: 6 points, 2 running, 1 finished -> 3 new ones, then none.
    spec = bayes_spec(tmp_path, "parameters: {a: {values: [1, 2, 3]}, b: {values: [x, y]}}", program="t.py")
    running = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    finished = [FinishedRun({"a": 3, "b": "x"}, [0.5], True)]
    new = propose(spec, finished, running, 10)
    taken = {spec.command(p) for p in [*running, finished[0].params]}
    assert len(new) == 3 and not taken & {spec.command(p) for p in new}
    assert propose(spec, finished, [*running, *new], 1) == []


def test_failed_runs_and_runs_without_values_get_the_worst_value_seen(tmp_path: Path) -> None:
    spec = bayes_spec(tmp_path, "parameters: {x: {min: 0.0, max: 1.0}}", program="t.py")
    runs = [FinishedRun({"x": 0.1}, [3.0, 1.0], True), FinishedRun({"x": 0.2}, [9.0], False),
            FinishedRun({"x": 0.3}, [], True), FinishedRun({"x": 0.4}, [2.0], True)]
    assert observed_values(spec, runs) == [1.0, 9.0, 9.0, 2.0]  # best per run; worst of all for 2 and 3
    maximize = bayes_spec(tmp_path, "parameters: {x: {min: 0.0, max: 1.0}}",
                          head="method: bayes\nmetric: {name: acc, goal: maximize}\nrun_cap: 5\n", program="t.py")
    assert observed_values(maximize, runs) == [3.0, 1.0, 1.0, 2.0]
    assert observed_values(spec, [FinishedRun({"x": 0.1}, [], False)]) == [0.0]  # W&B's value with nothing seen


def test_it_finds_the_minimum_of_a_smooth_function(tmp_path: Path) -> None:
    # Seeded, so deterministic; a margin wide enough for any sampler worth the name.
    spec = bayes_spec(tmp_path, "parameters: {x: {min: 0.0, max: 1.0}, y: {min: 0.0, max: 1.0}}",
                      head="method: bayes\nmetric: {name: loss, goal: minimize}\nrun_cap: 30\n", program="t.py")
    finished: list[FinishedRun] = []
    for _ in range(30):
        (p,) = propose(spec, finished, [], 1)
        finished.append(FinishedRun(p, [(p["x"] - 0.8) ** 2 + (p["y"] - 0.3) ** 2], True))
    late = [r.values[0] for r in finished[15:]]
    assert sorted(late)[len(late) // 2] < 0.05  # uniform points: median about 0.2


def test_constant_only_spaces_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BatchrunError, match="method 'bayes' needs at least one parameter that varies"):
        bayes_spec(tmp_path, "parameters: {a: {value: 1}, b: {values: [2]}}", program="t.py")


def test_missing_optuna_is_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = bayes_spec(tmp_path, "parameters: {x: {min: 0.0, max: 1.0}}", program="t.py")
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(BatchrunError) as err:
        propose(spec, [], [], 1)
    assert str(err.value) == INSTALL_HINT == "method 'bayes' needs Optuna: pip install 'batchrun[bayes]'"


def test_search_space_refuses_grids(tmp_path: Path) -> None:
    path = tmp_path / "grid.yml"
    path.write_text("method: grid\nprogram: t.py\nparameters: {a: {values: [1]}}\n")
    with pytest.raises(ValueError, match="random or bayes"):
        search_space(load_gridspec(path))


# ------------------------------------------------------- zip, when and exclude

# optimizer, momentum and nesterov only where optimizer is sgd, lr and warmup zipped, an exclude.
COMPOSED = (Path(__file__).parent / "data" / "composed" / "space.yml").read_text()
ROWS = {0.1: 100, 0.01: 200, 0.001: 300}


def a_point_of_composed(params: dict[str, Any]) -> bool:
    return (("momentum" in params) == ("nesterov" in params) == (params["optimizer"] == "sgd")
            and ROWS[params["lr"]] == params["warmup"] and not (params["layers"] > 4 and params["lr"] > 0.01))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_random_line_of_a_composed_space_parses_back(tmp_path: Path, command: str) -> None:
    # ${args_no_boolean_flags} writes nesterov=false as no flag, as if it did not apply: the conditions tell them apart.
    command = command.replace("${uni}", "${layers}").replace("${int}", "${layers}")  # placed: a parameter that always applies
    spec = bayes_spec(tmp_path, COMPOSED, command=command)
    path = tmp_path / "random.yml"
    path.write_text(f"method: random\nrun_cap: 60\nseed: 3\ncommand: {command}\n" + textwrap.dedent(COMPOSED))
    points = list(load_gridspec(path).iter_points())
    assert {p["optimizer"] for _, p in points} == {"sgd", "adam"} and {p.get("nesterov") for _, p in points} == {True, False, None}
    for line, point in points:
        assert spec.params_of(line) == point, line
        assert spec.command(point) == line


def test_proposals_of_a_composed_space(tmp_path: Path) -> None:
    spec = bayes_spec(tmp_path, COMPOSED, program="t.py")
    finished: list[FinishedRun] = []
    for i in range(16):  # past TPE's random start-up: the model proposes the later ones
        (point,) = propose(spec, finished, [], 1)
        assert a_point_of_composed(point), point
        assert spec.params_of(spec.command(point)) == point
        # The optimizer sees the coordinates of the parameters the point has, the zip group as its row.
        internal = spec.to_internal(point)
        assert set(internal) == {"layers", "optimizer", "zip lr warmup"} | ({"momentum", "nesterov"} if "momentum" in point else set())
        assert internal["zip lr warmup"] == list(ROWS).index(point["lr"])
        finished.append(FinishedRun(point, [point["layers"] * point["lr"] + point.get("momentum", 0.0) + random.Random(i).random()], True))
    assert {p.params["optimizer"] for p in finished} == {"sgd", "adam"}


def test_lines_that_are_no_point_of_a_composed_search(tmp_path: Path) -> None:
    spec = bayes_spec(tmp_path, COMPOSED, program="t.py")
    line = "/usr/bin/env python t.py --layers={} --lr={} {}--optimizer={} --warmup={}".format
    assert spec.params_of(line(2, 0.1, "--momentum=0.6 --nesterov=True ", "sgd", 100)) == {
        "layers": 2, "lr": 0.1, "momentum": 0.6, "nesterov": True, "optimizer": "sgd", "warmup": 100}
    assert spec.params_of(line(2, 0.1, "", "adam", 100)) == {"layers": 2, "lr": 0.1, "optimizer": "adam", "warmup": 100}
    for bad in [line(2, 0.1, "--momentum=0.6 --nesterov=True ", "adam", 100),  # momentum where it does not apply
                line(2, 0.1, "", "sgd", 100),  # no momentum where it does
                line(2, 0.1, "--momentum=0.6 ", "sgd", 100),  # half of what applies
                line(2, 0.1, "", "adam", 200),  # not a row of the zip group
                line(6, 0.1, "", "adam", 100)]:  # excluded
        assert spec.params_of(bad) is None, bad


def test_a_small_space_bounds_what_is_left_to_propose(tmp_path: Path) -> None:
    body = "parameters: {lr: {values: [0.1, 0.01, 0.001]}, layers: {values: [2, 8]}}\nexclude: ['layers > 4 and lr > 0.01']\n"
    spec = bayes_spec(tmp_path, body, program="t.py")
    assert spec.space_size == 5  # 3 * 2, one excluded; run_cap 20 cannot be reached
    state = sweep_state(spec, [])
    assert state.to_propose(spec, 50) == 5
    points = propose(spec, [], [], 50)
    assert len(points) == 5 and all(not (p["layers"] == 8 and p["lr"] == 0.1) for p in points)
    state = sweep_state(spec, [(spec.command(p), "succeeded", None) for p in points[:2]] + [(spec.command(points[2]), None, None)])
    assert state.to_propose(spec, 50) == 2
    assert bayes_spec(tmp_path, "parameters: {a: {values: [1, 2]}, x: {min: 0.0, max: 1.0}}", program="t.py").space_size is None


# ------------------------------------------------------- the launch's view


def test_sweep_state_reads_runfile_lines_as_the_optimizer_sees_them(tmp_path: Path) -> None:
    spec = bayes_spec(tmp_path, "parameters: {x: {min: 0.0, max: 1.0}}", program="t.py")
    line = "/usr/bin/env python t.py --x={}".format
    (tmp_path / "metrics.jsonl").write_text('{"loss": 2.0}\n{"loss": 1.5}\n{"loss": 3.0}\n{"_summary": {"loss": 1.0}}\n')
    logged = read_metrics(tmp_path / "metrics.jsonl")
    jobs = [(line(0.1), "succeeded", logged), (line(0.2), "stopped", logged), (line(0.3), "failed", logged),
            (line(0.4), "timeout", None), (line(0.5), None, None), (line(0.6), "running", None),
            (line(0.7), "interrupted", None), ("echo by hand", "succeeded", logged)]
    state = sweep_state(spec, jobs)
    # A run's values are the extremes of its history and its summary: its best, and the worst seen, are among them.
    assert [(r.params["x"], list(r.values), r.succeeded) for r in state.finished] == [
        (0.1, [1.5, 3.0, 1.0], True), (0.2, [1.5, 3.0, 1.0], True), (0.3, [1.5, 3.0, 1.0], False), (0.4, [], False)]
    assert state.in_flight == [{"x": 0.5}, {"x": 0.6}, {"x": 0.7}] and state.foreign == 1
    # run_cap 20: 4 finished + 3 in flight leave 13 to propose, however many slots are free.
    assert state.to_propose(spec, 4) == 4 and state.to_propose(spec, 50) == 13
    assert len(next_commands(spec, state, 2)) == 2


@pytest.mark.parametrize("body", ["parameters: {x: {min: 0.0, max: 1.0}, k: {values: [1, 2]}}",
                                  "parameters: {x: {min: 0.0, max: 1.0, when: 'k == 1'}, k: {values: [1, 2]}, m: {values: [a, b, c]},"
                                  " n: {values: [1, 2, 3]}}\nzip: [[m, n]]\nexclude: ['k == 2 and n == 3']"])
def test_a_killed_search_resumes_from_its_files_alone(tmp_path: Path, body: str) -> None:
    """The runfile and the metrics files are the whole state: a search rebuilt
    from them after a 'crash' at any step proposes what the uninterrupted one did."""

    def search(workdir: Path, crash_at: set[int]) -> list[str]:
        workdir.mkdir()
        runfile, logs = workdir / "spec.runfile", workdir / "logs"
        runfile.touch()
        spec = None
        for step in range(12):
            if spec is None or step in crash_at:  # a new process: nothing in memory
                spec = bayes_spec(workdir, body,
                                  head="method: bayes\nmetric: {name: loss, goal: minimize}\nrun_cap: 10\n", program="t.py")
            lines = runfile.read_text().splitlines()
            jobs = [(c, "succeeded" if (logs / job_id_of(c)).exists() else None, read_metrics(logs / job_id_of(c)))
                    for c in lines]
            state = sweep_state(spec, jobs)
            new = next_commands(spec, state, 2 - len(state.in_flight))
            with runfile.open("a") as handle:  # appended before any runs, as the launch will
                handle.writelines(c + "\n" for c in new)
            for command in [*new, *(spec.command(p) for p in state.in_flight)][:1]:  # one job finishes per step
                params = spec.params_of(command)
                assert params is not None
                (logs / job_id_of(command)).parent.mkdir(exist_ok=True)
                (logs / job_id_of(command)).write_text(json.dumps({"loss": (params.get("x", 0.5) - 0.3) ** 2 + params["k"]}) + "\n")
        return runfile.read_text().splitlines()

    plain = search(tmp_path / "plain", set())
    assert len(plain) == len(set(plain)) == 10  # run_cap lines, none twice
    assert search(tmp_path / "crashed", {3, 4, 7}) == plain


def test_the_example_spec_and_train_py(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "bayes"
    gridspec = load_gridspec(example / "spec.yml")
    spec = BayesSpec(gridspec)
    assert (spec.run_cap, spec.metric.name, spec.names) == (60, "val_loss", ("dropout", "layers", "lr"))
    assert gridspec.early_terminate is not None and gridspec.early_terminate.bands[:3] == (3, 9, 27)
    (point,) = propose(spec, [], [], 1)
    args = spec.command(point).split()[3:]  # /usr/bin/env python train.py --dropout=... --layers=... --lr=...
    metrics = tmp_path / "metrics.jsonl"
    env = {"BATCHRUN_METRICS": str(metrics), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, str(example / "train.py"), *args, "--sleep=0"], env=env, check=True, capture_output=True)
    logged = read_metrics(metrics)
    assert logged is not None
    series = logged.series["val_loss"]
    assert series.count == 27 and series.last < series.max
    # Without a metrics file it still trains (and logs nowhere).
    run = subprocess.run([sys.executable, str(example / "train.py"), *args, "--sleep=0", "--epochs=2"],
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    assert run.stdout.count("val_loss") == 2
