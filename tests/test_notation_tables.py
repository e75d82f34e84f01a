"""The notations against the real tools: tables recorded from bash, `parallel --dry-run` and Hydra's parser
(tests/data/notation/generate.py), and the live tools where they are installed.

A line batchrun writes is compared by what the shell makes of it: brace words
through `bash +B` (brace expansion off, so only batchrun's expansion counts),
parallel's lines as text, Hydra's job overrides as the words the app receives.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchrun.errors import UsageError
from batchrun.sweeps.notation import expand_command
from batchrun.sweeps.notation.braces import expand_braces

DATA = Path(__file__).resolve().parent / "data" / "notation"
sys.path.insert(0, str(DATA))
import generate  # noqa: E402 - the generator's case lists, shared with the live comparisons

BRACES = json.loads((DATA / "braces.json").read_text())
PARALLEL = json.loads((DATA / "parallel.json").read_text())
HYDRA = json.loads((DATA / "hydra.json").read_text())
# Where batchrun refuses what Hydra accepts, on purpose: an empty sweep (no job) and a key given twice.
HYDRA_REFUSED = {("x=range(3,1)",), ("x=1,2", "x=3")}


def _words_of_alternatives(alternatives: list[str]) -> list[str]:
    """What bash makes of the alternatives as words, with brace expansion and globbing off."""
    out = subprocess.run(["bash", "-c", "set -f +B; printf '%s\\0' " + " ".join(alternatives)], capture_output=True, check=True).stdout
    return [w.decode() for w in out.split(b"\0")[:-1]] if alternatives else []


def test_every_recorded_case_is_still_a_case() -> None:
    assert [c["word"] for c in BRACES["cases"]] == generate.BRACE_WORDS
    assert [c["words"] for c in PARALLEL["cases"]] == generate.PARALLEL_CASES
    assert [c["overrides"] for c in HYDRA["cases"]] == generate.HYDRA_CASES


@pytest.mark.parametrize("case", BRACES["cases"], ids=lambda c: c["word"])
def test_braces_as_recorded_from_bash(case: dict[str, Any]) -> None:
    assert _words_of_alternatives(list(expand_braces(case["word"]))) == case["bash"]


@pytest.mark.parametrize("word", generate.BRACE_WORDS + ["{a,b}{c,d}{e,f}", "--x={1..3}_{a..b}", "{0..100..7}"])
def test_braces_as_live_bash_expands_them(word: str) -> None:
    truth = subprocess.run(["bash", "-c", "set -f; printf '%s\\0' " + word], capture_output=True, check=True).stdout
    assert _words_of_alternatives(list(expand_braces(word))) == [w.decode() for w in truth.split(b"\0")[:-1]]


def test_brace_counts_match_their_strings() -> None:
    for case in BRACES["cases"]:
        node = expand_braces(case["word"])
        assert node.count() == len(list(node))


def _parallel_lines(words: list[str], cwd: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (cwd / name).write_text(text)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return list(expand_command(words).lines())
    finally:
        os.chdir(old)


@pytest.mark.parametrize("case", PARALLEL["cases"], ids=lambda c: " ".join(c["words"])[:60])
def test_parallel_as_recorded_from_parallel_dry_run(case: dict[str, Any], tmp_path: Path) -> None:
    assert _parallel_lines(case["words"], tmp_path, PARALLEL["files"]) == [line.strip() for line in case["lines"]]


@pytest.mark.skipif(shutil.which("parallel") is None, reason="GNU parallel is not installed: compared with the recorded table only")
@pytest.mark.parametrize("words", generate.PARALLEL_CASES, ids=lambda w: " ".join(w)[:60])
def test_parallel_as_live_parallel_writes_them(words: list[str], tmp_path: Path) -> None:
    ours = _parallel_lines(words, tmp_path, generate.PARALLEL_FILES)
    live = subprocess.run(["parallel", "--will-cite", "--keep-order", "--dry-run", *words], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert ours == [line.strip() for line in live.stdout.splitlines()]


def _check_hydra(case: dict[str, Any]) -> None:
    overrides = case["overrides"]
    if "error" in case or tuple(overrides) in HYDRA_REFUSED:
        with pytest.raises(UsageError):
            list(expand_command(["python", "app.py", "-m", *overrides]).lines())
        return
    lines = list(expand_command(["python", "app.py", "-m", *overrides]).lines())
    ours = [shlex.split(line)[2:] for line in lines]
    # A sweep's words are Hydra's job overrides; the other overrides stay as typed.
    expected = [[job if swept else typed for job, swept, typed in zip(jobs, case["sweep"], overrides, strict=True)] for jobs in case["jobs"]]
    if any("shuffle(" in o for o in overrides):
        assert sorted(ours) == sorted(expected)
    else:
        assert ours == expected


@pytest.mark.parametrize("case", HYDRA["cases"], ids=lambda c: " ".join(c["overrides"]))
def test_hydra_as_recorded_from_hydras_parser(case: dict[str, Any]) -> None:
    _check_hydra(case)


def test_hydra_with_the_live_parser_when_a_venv_has_it(tmp_path: Path) -> None:
    """BATCHRUN_HYDRA_PYTHON: a Python with hydra-core (a separate venv; never a batchrun dependency)."""
    python = os.environ.get("BATCHRUN_HYDRA_PYTHON")
    if not python:
        pytest.skip("BATCHRUN_HYDRA_PYTHON is not set: compared with the recorded table only")
    script = (DATA / "generate.py").read_text()
    target = tmp_path / "generate.py"
    target.write_text(script)
    subprocess.run([python, "-c", "import generate; generate.HERE = __import__('pathlib').Path('.'); generate.record_hydra()"], cwd=tmp_path, check=True, capture_output=True)
    live = json.loads((tmp_path / "hydra.json").read_text())
    for case in live["cases"]:
        _check_hydra(case)
