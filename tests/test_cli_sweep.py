"""`batchrun sweep` and `batchrun launch grid.yml` through the real CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import read_metadata

from batchrun.runfile.file import job_id_of

RunCli = Callable[..., tuple[int, str, str]]

ORIGINAL_README_SPEC = """\
program: python3 my_script.py
parameters:
  alpha:
    values:
      - 1
      - 2
      - 5
  beta:
    values: [0.1, 0.25, 0.5]
  gamma:
    value: 100
"""


def test_the_original_readme_example(workdir: Path, run_cli: RunCli) -> None:
    (workdir / "gridspec.yml").write_text(ORIGINAL_README_SPEC)
    code, out, err = run_cli("sweep", "gridspec.yml")
    assert code == 0, err
    assert out == "batchrun: wrote gridspec.runfile (9 commands)\n"
    lines = (workdir / "gridspec.runfile").read_text().splitlines()
    assert lines[:4] == [
        "python3 my_script.py --alpha=1 --beta=0.1 --gamma=100",
        "python3 my_script.py --alpha=1 --beta=0.25 --gamma=100",
        "python3 my_script.py --alpha=1 --beta=0.5 --gamma=100",
        "python3 my_script.py --alpha=2 --beta=0.1 --gamma=100",
    ]
    assert len(lines) == 9


def test_out_and_count(workdir: Path, run_cli: RunCli) -> None:
    (workdir / "gridspec.yml").write_text(ORIGINAL_README_SPEC)
    assert run_cli("sweep", "gridspec.yml", "--count") == (0, "9\n", "")
    assert not (workdir / "gridspec.runfile").exists()
    code, out, _ = run_cli("sweep", "gridspec.yml", "-o", "other.runfile")
    assert code == 0 and (workdir / "other.runfile").exists()
    code, out, _ = run_cli("sweep", "gridspec.yml", "--out", "third.runfile")
    assert code == 0 and (workdir / "third.runfile").exists()


def test_launch_of_a_gridspec_is_launch_of_its_runfile(workdir: Path, run_cli: RunCli) -> None:
    side = workdir / "side"
    (workdir / "grid.yml").write_text(f"program: echo >> {side}\nparameters:\n  a:\n    values: [1, 2]\n")
    code, out, err = run_cli("launch", "grid.yml", "-j", "2")
    assert code == 0, err
    assert (workdir / "grid.runfile").exists()
    meta = read_metadata(workdir / "runs" / "grid")
    assert set(meta) == {job_id_of(f"echo >> {side} --a=1"), job_id_of(f"echo >> {side} --a=2")}
    # The other spelling sees the same jobs as done.
    code, out, _ = run_cli("launch", "grid.runfile")
    assert code == 0 and "0 to run" in out
    # Adding a value runs only the new point.
    (workdir / "grid.yml").write_text(f"program: echo >> {side}\nparameters:\n  a:\n    values: [1, 2, 3]\n")
    code, out, _ = run_cli("launch", "grid.yml")
    assert code == 0 and "1 to run" in out
    assert sorted(side.read_text().split()) == ["--a=1", "--a=2", "--a=3"]


def test_bad_gridspecs_are_one_line_and_exit_2(workdir: Path, run_cli: RunCli) -> None:
    cases = {
        "noprog.yml": ("parameters:\n  a:\n    value: 1\n", "noprog.yml"),
        "badyaml.yml": ("program: x\nparameters: [\n", "badyaml.yml"),
        "step0.yml": ("program: x\nparameters:\n  a:\n    min: 0\n    max: 3\n    step: 0\n", "step0.yml"),
        "typo.yml": ("program: x\nparameters:\n  a:\n    valuse: [1]\n", "did you mean"),
        "tag.yml": ("program: !!python/object/apply:os.system ['echo pwned']\nparameters: {}\n", "tag.yml"),
        "bayes.yml": ("method: bayes\nprogram: x\nparameters:\n  a:\n    values: [1]\n", "bayes"),
    }
    for name, (text, expected) in cases.items():
        (workdir / name).write_text(text)
        for args in (("sweep", name), ("launch", name)):
            code, out, err = run_cli(*args)
            assert code == 2, (name, args, err)
            assert err.count("\n") == 1 and err.startswith("batchrun: error: ") and expected in err, (name, err)
            assert "Traceback" not in err
    assert not (workdir / "pwned").exists()
    assert not list(workdir.glob("*.runfile"))
