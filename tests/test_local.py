"""Unit tests of the local executor's wrapper choice and exit records."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from batchrun.executors.local.executor import (
    _WRAPPER,
    _WRAPPER_DIRECT,
    read_exit_record,
    wrapper_for,
)


@pytest.mark.parametrize(
    "command",
    ["exit 3", "set -e; false; echo no", "trap 'echo t' EXIT; true", "exec echo replaced", "f() { return 4; }; f",
     ". /dev/null; exit 5", "BATCHRUN_LOG_DIR=/nowhere; true", "unset HOME; shift; true", "eval 'exit 6'"],
)
def test_lines_that_could_skip_the_record_get_the_subshell(command: str) -> None:
    assert wrapper_for(command) is _WRAPPER


@pytest.mark.parametrize("command", ["true 1", "python3 train.py --lr=0.1 --seed=2", "echo $BATCHRUN_LOG_DIR", "cd /tmp && ls", "python3 -m pkg.exec_module"])
def test_plain_lines_run_directly(command: str) -> None:
    assert wrapper_for(command) is _WRAPPER_DIRECT


@pytest.mark.parametrize(
    "command",
    ["exit 3", "true 1", "false", "echo $0 $#", "set -e; false; echo no", "exec sh -c 'exit 7'", "kill -TERM $$",
     "printf '%s\\n' a b; (exit 2)", "x=1; echo $x", "echo out; echo err >&2; sh -c 'exit 9'"],
)
def test_both_wrappers_behave_like_sh_c_and_record_the_status(tmp_path: Path, command: str) -> None:
    direct = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True)
    wrapped = subprocess.run(
        ["/bin/sh", "-c", wrapper_for(command), "/bin/sh", command],
        capture_output=True, text=True, env={**os.environ, "BATCHRUN_LOG_DIR": str(tmp_path)},
    )
    assert (wrapped.returncode, wrapped.stdout, wrapped.stderr) == (direct.returncode if direct.returncode >= 0 else wrapped.returncode, direct.stdout, direct.stderr)
    record = read_exit_record(tmp_path)
    if direct.returncode >= 0 and "kill" not in command:
        assert record is not None and record[0] == direct.returncode


def test_exit_records_name_their_attempt_and_old_ones_still_load(tmp_path: Path) -> None:
    exit_file = tmp_path / "exit"
    exit_file.write_text("3 2\n")
    assert read_exit_record(tmp_path, 2) is not None and read_exit_record(tmp_path, 2)[0] == 3  # type: ignore[index]
    assert read_exit_record(tmp_path) is not None
    assert read_exit_record(tmp_path, 3) is None, "attempt 2's record was read as attempt 3's"
    exit_file.write_text("5\n")  # written before records named their attempt
    assert read_exit_record(tmp_path, 7) is not None and read_exit_record(tmp_path, 7)[0] == 5  # type: ignore[index]
    exit_file.write_text("0 \n")  # a wrapper run without BATCHRUN_ATTEMPT
    assert read_exit_record(tmp_path, 1) is not None
    for bad in ("1 2", "x 1\n", "1 y\n", "1 2 3\n", "\n"):
        exit_file.write_text(bad)
        assert read_exit_record(tmp_path, 2) is None, bad


@pytest.mark.parametrize("command", ["exit 4", "true", "BATCHRUN_ATTEMPT=9; exit 4", "__batchrun_attempt=9; false"])
def test_the_wrapper_records_the_attempt_it_was_started_as(tmp_path: Path, command: str) -> None:
    env = dict(os.environ, BATCHRUN_LOG_DIR=str(tmp_path), BATCHRUN_ATTEMPT="2")
    subprocess.run(["/bin/sh", "-c", wrapper_for(command), "/bin/sh", command], env=env, check=False)
    status = int((tmp_path / "exit").read_text().split()[0])
    assert (tmp_path / "exit").read_text() == f"{status} 2\n"
    assert read_exit_record(tmp_path, 2) is not None and read_exit_record(tmp_path, 1) is None
