"""Where two features meet (issue 22): each seam found walking the README, through the real CLI.

`test_matrix.py` keeps the whole class closed (every read command x target x
state); these pin each reported case as it was found.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, exit_text, run_batchrun, start_batchrun, wait_for

from batchrun.cli.display import Progress
from batchrun.launch.events import JobEvent
from batchrun.runfile.file import Job, job_id_of
from batchrun.store.records import JobRecord, State

MakeRunfile = Callable[..., Path]


def _one_error(proc: subprocess.CompletedProcess[str], says: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("batchrun: error: ") and says in proc.stderr, proc.stderr


# -- 1. results and report take a bayes spec ---------------------------------------------


@pytest.mark.slow
def test_results_and_report_read_a_bayes_spec_as_status_does(workdir: Path) -> None:
    (workdir / "train.py").write_text(
        "import json, os, sys\n"
        "args = dict(a[2:].split('=') for a in sys.argv[1:])\n"
        "with open(os.environ['BATCHRUN_METRICS'], 'a') as f:\n"
        "    f.write(json.dumps({'loss': float(args['lr']) * int(args['layers'])}) + '\\n')\n"
    )
    (workdir / "spec.yml").write_text(
        "program: train.py\nmethod: bayes\nmetric: {name: loss, goal: minimize}\nrun_cap: 3\n"
        "command: [python3, '${program}', '${args}']\n"
        "parameters:\n  lr: {distribution: uniform, min: 0.1, max: 1}\n  layers: {values: [1, 2, 3]}\n"
    )
    assert run_batchrun("launch", "spec.yml", "-j", "1", cwd=workdir).returncode == 0
    results = run_batchrun("results", "spec.yml", "--json", cwd=workdir)
    assert results.returncode == 0, results.stderr
    rows = json.loads(results.stdout)
    assert len(rows) == 3 and all(isinstance(row["lr"], float) and row["layers"] in (1, 2, 3) and row["loss"] > 0 for row in rows), rows
    report = run_batchrun("report", "spec.yml", cwd=workdir)
    assert report.returncode == 0 and report.stdout.startswith("batchrun: wrote report.html (3 runs"), report.stderr


# -- 3. plan while a launch runs -----------------------------------------------------------


def test_plan_and_dry_run_while_a_launch_runs_say_what_it_is_doing(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["sleep 30", "echo second"])
    launch = start_batchrun("launch", "exp.runfile", "-j", "1", cwd=workdir)
    try:
        wait_for(lambda: "1 running" in run_batchrun("status", "exp.runfile", cwd=workdir).stdout, what="the launch to start its job")
        for args in (("plan", "exp.runfile"), ("launch", "exp.runfile", "--dry-run")):
            shown = run_batchrun(*args, cwd=workdir)
            assert shown.returncode == 0, shown.stderr
            lines = shown.stdout.splitlines()
            assert lines[0] == f"batchrun: exp.runfile: a launch (pid {launch.pid}) is running it: 2 jobs: 0 succeeded, 0 failed, 0 interrupted, 1 running, 1 pending"
            assert "another launch is refused until it ends" in lines[1]
            assert "adopting" not in shown.stdout and "earlier launch" not in shown.stdout
    finally:
        launch.send_signal(signal.SIGINT)
        launch.communicate(timeout=60)


# -- 5. the live display ------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_printed_while_the_display_closes_is_not_lost() -> None:
    """Ctrl-C: the interrupted jobs end while the live area closes; each line is printed, never dropped."""
    out = _Terminal()
    progress = Progress(out, total=2, done_before=0, failed_before=0, n_jobs=2)
    progress.start()
    job = Job("sleep 9", job_id_of("sleep 9"), 1)
    rec = JobRecord(job.job_id)
    rec.state, rec.start, rec.end = State.RUNNING, 100.0, None
    progress(JobEvent("start", job, rec, 0))
    progress.close()  # the launch's finally closes the display while a worker reports the job's end
    ended = JobRecord(job.job_id)
    ended.state, ended.start, ended.end = State.INTERRUPTED, 100.0, 101.0
    progress(JobEvent("end", job, ended, 0))
    assert f"INTERRUPTED {job.job_id}" in out.getvalue()


def _screen(output: str) -> list[str]:
    """What a terminal shows after `output`: enough of one for rich's live area (text, CR, LF, erase line, cursor up)."""
    screen, row = [""], 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", output):
        if token == "\n":
            row += 1
            screen += [""] * (row + 1 - len(screen))
        elif token == "\x1b[2K":
            screen[row] = ""
        elif token.startswith("\x1b[") and token.endswith("A"):
            row = max(0, row - int(token[2:-1] or 1))
        elif not token.startswith(("\x1b", "\r")):
            screen[row] += token
    return screen


def test_lines_printed_at_once_by_several_workers_all_stay_on_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs end at the same instant (Ctrl-C): both lines stay above the live area.

    rich erases its area by the height it last drew; the fault placed here is two
    workers printing at once, each having computed its erasure before the other drew.
    """
    from rich.live import Live

    meet = threading.Barrier(2)
    real = Live.process_renderables

    def at_once(self: Live, renderables: Any) -> Any:
        drawn = real(self, renderables)  # the erasure, from the height last drawn
        try:
            meet.wait(timeout=0.5)  # the other worker's print computes its own now, if it may
        except threading.BrokenBarrierError:
            pass
        return drawn

    monkeypatch.setattr(Live, "process_renderables", at_once)
    out = _Terminal()
    progress = Progress(out, total=4, done_before=0, failed_before=0, n_jobs=4)
    progress.start()
    jobs = [Job(f"sleep {i}", job_id_of(f"sleep {i}"), i) for i in range(1, 5)]
    for slot, job in enumerate(jobs):
        rec = JobRecord(job.job_id)
        rec.state, rec.start = State.RUNNING, time.time()
        progress(JobEvent("start", job, rec, slot))

    def end(job: Job, slot: int) -> None:
        rec = JobRecord(job.job_id)
        rec.state, rec.start, rec.end = State.INTERRUPTED, time.time() - 1, time.time()
        progress(JobEvent("end", job, rec, slot))

    workers = [threading.Thread(target=end, args=(job, slot)) for slot, job in enumerate(jobs[:2])]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    progress.close()
    shown = [line for line in _screen(out.getvalue()) if line.startswith("INTERRUPTED")]
    assert sorted(line.split()[1] for line in shown) == sorted(job.job_id for job in jobs[:2]), _screen(out.getvalue())


@pytest.mark.slow
def test_ctrl_c_says_what_the_launch_waits_for(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["trap '' TERM; sleep 3"])
    launch = start_batchrun("launch", "exp.runfile", "--grace", "2", cwd=workdir)
    wait_for(lambda: "1 running" in run_batchrun("status", "exp.runfile", cwd=workdir).stdout, what="the job to start")
    launch.send_signal(signal.SIGINT)
    out, err = launch.communicate(timeout=60)
    assert launch.returncode == 130, out + err
    assert "batchrun: interrupted: waiting for 1 job to stop (Ctrl-C again to kill now)" in out, out


# -- 6. --halt-now's summary ------------------------------------------------------------------


def test_halt_now_summary_counts_as_status_and_counts_each_job_once(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["sleep 0.3; exit 1", "sleep 30", "echo 3", "echo 4", "echo 5", "echo 6"])
    launch = run_batchrun("launch", "exp.runfile", "-j", "2", "--halt-now", "--grace", "0.5", cwd=workdir)
    assert launch.returncode == 1, launch.stderr
    lines = launch.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("batchrun: exp.runfile: 6 jobs: "))
    assert summary == "batchrun: exp.runfile: 6 jobs: 0 succeeded, 1 failed, 1 interrupted, 4 pending (2 ran now)"
    assert "  stopped after the first failure (--halt-now): 1 interrupted, 4 pending (never started); they run with: batchrun launch exp.runfile" in lines
    counters = [re.search(r"\[\d+/\d+\]|\(runs again\)", line).group() for line in lines if line.startswith(("FAILED", "INTERRUPTED"))]  # type: ignore[union-attr]
    assert counters == ["[1/6]", "(runs again)"]  # the interrupted job does not repeat the failed one's counter
    status = run_batchrun("status", "exp.runfile", cwd=workdir).stdout.splitlines()[0]
    assert status == "exp.runfile: 6 jobs: 0 succeeded, 1 failed, 1 interrupted, 0 running, 4 pending"
    wait = run_batchrun("wait", "exp.runfile", cwd=workdir)
    assert wait.returncode == 1 and wait.stdout == "batchrun: exp.runfile: finished: 6 jobs: 0 succeeded, 1 failed, 1 interrupted, 4 pending (exit 1)\n"


# -- 7. counts and tables agree -----------------------------------------------------------------


def test_an_ignored_job_is_listed_and_summed_as_ignored_everywhere(workdir: Path) -> None:
    (workdir / "exp.runfile").write_text("echo ok\nexit 3\necho two\n")
    (workdir / "dodo.py").write_text("from batchrun.dodo import DOIT_CONFIG, runfile_tasks  # noqa: F401\n\n\ndef task_exp():\n    yield from runfile_tasks('exp.runfile')\n")
    doit = [sys.executable, "-m", "doit"]
    subprocess.run([*doit, "-n", "2"], cwd=workdir, capture_output=True, timeout=120)
    ok, failing = job_id_of("echo ok"), job_id_of("exit 3")
    assert subprocess.run([*doit, "ignore", f"exp:{ok}"], cwd=workdir, capture_output=True, timeout=60).returncode == 0
    status = run_batchrun("status", "exp.runfile", cwd=workdir).stdout.splitlines()
    assert status[0] == "exp.runfile: 3 jobs: 1 succeeded, 1 failed, 0 interrupted, 0 running, 0 pending, 1 ignored"
    assert status[3].split()[:3] == ["1", ok[:8], "ignored"]
    launch = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert "batchrun: exp.runfile: 3 jobs: 1 succeeded, 1 failed, 1 ignored (0 ran now)" in launch.stdout.splitlines()
    listed = subprocess.run([*doit, "list", "--all", "--status"], cwd=workdir, capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert f"I exp:{ok}   echo ok" in listed and f"F exp:{failing}   exit 3" in listed, listed
    info = subprocess.run([*doit, "info", f"exp:{ok}"], cwd=workdir, capture_output=True, text=True, timeout=60)
    assert "status     : ignored (doit ignore)" in info.stdout and "up-to-date" not in info.stdout, info.stdout
    info = subprocess.run([*doit, "info", f"exp:{failing}"], cwd=workdir, capture_output=True, text=True, timeout=60)
    assert "status     : failed, exit 3: not run again in mode resume" in info.stdout, info.stdout


def test_jobs_that_ended_unwatched_are_counted_once(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["echo a", "echo b"])
    assert run_batchrun("launch", "exp.runfile", "--detach", cwd=workdir).returncode == 0
    wait_for(lambda: sum(exit_text(log_dir) is not None for log_dir in (workdir / "runs/exp/logs").iterdir()) == 2, what="the detached jobs to end")
    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert again.stdout.splitlines()[0] == "batchrun: exp.runfile: 2 jobs, 2 already succeeded, 0 to run; of these, 2 ended while no launch was watching (collected now)"


def test_a_timeout_is_counted_apart_as_status_does(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["sleep 30", "echo ok"])
    launch = run_batchrun("launch", "exp.runfile", "--timeout", "1", "--grace", "0.5", cwd=workdir)
    assert launch.returncode == 1
    assert "batchrun: exp.runfile: 2 jobs: 1 succeeded, 1 timeout (2 ran now)" in launch.stdout.splitlines()
    assert f"  timeout: {job_id_of('sleep 30')}  line 1  sleep 30" in launch.stdout.splitlines()
    assert run_batchrun("status", "exp.runfile", cwd=workdir).stdout.startswith("exp.runfile: 2 jobs: 1 succeeded, 0 failed, 1 timeout,")


# -- 8. one syntax per option; a number is a line --------------------------------------------------


def test_results_takes_state_as_status_does(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["echo ok", "exit 1", "sleep 0.1"])
    run_batchrun("launch", "exp.runfile", cwd=workdir)
    for command in ("status", "results"):
        shown = run_batchrun(command, "exp.runfile", "--state", "failed,succeeded", "--csv", cwd=workdir)
        assert shown.returncode == 0, shown.stderr
        assert sorted(row.split(",")[2] for row in shown.stdout.splitlines()[1:]) == ["failed", "succeeded", "succeeded"]


def test_a_number_is_a_line_number_even_when_that_line_holds_no_job(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["# 1 comment", "echo 1; echo line two"])
    run_batchrun("launch", "exp.runfile", cwd=workdir)
    _one_error(run_batchrun("logs", "exp.runfile", "1", cwd=workdir), "line 1 of exp.runfile holds no job")
    assert run_batchrun("logs", "exp.runfile", "2", cwd=workdir).stdout == "1\nline two\n"


# -- 10. a W&B program with a space ---------------------------------------------------------------


def test_a_wandb_program_with_a_space_is_warned_once(workdir: Path) -> None:
    (workdir / "w.yml").write_text("program: python3 train.py\nmethod: grid\nparameters:\n  lr:\n    values: [1, 2]\n")
    for args in (("sweep", "w.yml"), ("launch", "w.yml", "-q")):
        proc = run_batchrun(*args, cwd=workdir)
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("batchrun: warning: w.yml: 'program' is one file name to W&B")]
        assert len(warnings) == 1 and "write program: train.py" in warnings[0], proc.stderr
    (workdir / "ok.yml").write_text("program: train.py\nmethod: grid\nparameters:\n  lr:\n    values: [1, 2]\n")
    assert run_batchrun("sweep", "ok.yml", cwd=workdir).stderr == ""


# -- 11. words ------------------------------------------------------------------------------------------


def test_counts_and_hints_read_right(make_runfile: MakeRunfile, workdir: Path) -> None:
    (workdir / "g.yml").write_text("program: sh -c 'exit 3' x\nparameters:\n  a:\n    values: [1]\n")
    sweep = run_batchrun("sweep", "g.yml", cwd=workdir)
    assert sweep.stdout == "batchrun: wrote g.runfile (1 command)\n"
    launch = run_batchrun("launch", "g.yml", cwd=workdir)
    assert "batchrun: g.yml: 1 job, 1 to run" in launch.stdout.splitlines()
    assert "  rerun the failed jobs with: batchrun launch g.yml --retry-failed" in launch.stdout.splitlines()
    again = run_batchrun("launch", "g.yml", cwd=workdir)
    assert "  1 of them ended in an earlier launch and was skipped" in again.stdout.splitlines()


def test_an_unknown_option_points_at_the_subcommand_with_a_did_you_mean(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["true"])
    proc = run_batchrun("launch", "exp.runfile", "--retry-faild", cwd=workdir)
    assert proc.stderr == "batchrun: error: unrecognized arguments: --retry-faild (--retry-faild: did you mean --retry-failed?) (see batchrun launch --help)\n"
    _one_error(run_batchrun("status", "exp.runfile", "--state", "stoped", cwd=workdir), "unknown state 'stoped'")


def test_an_unwritable_logs_directory_is_named(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["true"])
    (workdir / "runs/exp").mkdir(parents=True)
    (workdir / "runs/exp/logs").write_text("not a directory")
    _one_error(run_batchrun("launch", "exp.runfile", cwd=workdir), f"{workdir / 'runs/exp/logs'}: cannot create the logs directory")


def test_help_has_examples_and_exit_codes_and_one_name_for_the_target(workdir: Path) -> None:
    top = run_batchrun("--help", cwd=workdir).stdout
    assert "examples:\n  batchrun launch exp.runfile -j 4" in top and "exit codes:\n  0 " in top and "130  interrupted" in top
    for command in ("status", "logs", "failed", "plan", "results", "report", "kill", "stop", "wait"):
        usage = run_batchrun(command, "--help", cwd=workdir).stdout
        assert "RUNFILE|GRIDSPEC|RUNS_DIR" in usage, (command, usage)
    assert "RUNFILE|GRIDSPEC" in run_batchrun("launch", "--help", cwd=workdir).stdout


# -- 12. numbers ----------------------------------------------------------------------------------------


def test_status_and_results_show_a_number_alike(make_runfile: MakeRunfile, workdir: Path) -> None:
    make_runfile(["echo --lr=0.21693951420108287 --seed=1", "echo --lr=0.5 --seed=2"])
    run_batchrun("launch", "exp.runfile", cwd=workdir)
    status = run_batchrun("status", "exp.runfile", cwd=workdir).stdout.splitlines()
    results = run_batchrun("results", "exp.runfile", cwd=workdir).stdout.splitlines()
    assert status[2].split()[6:] == ["lr", "seed"] and results[0].split()[3:5] == ["lr", "seed"]
    assert status[3].split()[6] == results[1].split()[3] == "0.21694"


def test_the_over_table_gives_each_count_once(workdir: Path) -> None:
    (workdir / "exp.runfile").write_text("".join(f"echo '{{\"loss\": {s}}}' >> \"$BATCHRUN_METRICS\"; true --lr=0.1 --seed={s}\n" for s in (1, 2, 3)))
    run_batchrun("launch", "exp.runfile", cwd=workdir)
    table = run_batchrun("results", "exp.runfile", "--over", "seed", cwd=workdir).stdout.splitlines()
    assert table[0].split() == ["lr", "runs", "loss"]
    assert table[1].split() == ["0.1", "3", "2", "±", "1"]


def test_what_the_examples_write_is_ignored_in_the_clone() -> None:
    """README's set-up runs examples/montecarlo in the clone: what it writes is not left untracked."""
    written = ["examples/montecarlo/grid.runfile", "examples/montecarlo/results.csv", "examples/montecarlo/report.html", "examples/bayes/spec.runfile"]
    checked = subprocess.run(["git", "check-ignore", *written], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert checked.stdout.split() == written, checked.stdout + checked.stderr



# -- 13. requeue (issue 24) ---------------------------------------------------------------------------


def test_a_requeue_is_no_failure_for_fail_fast_nor_for_halt_now(make_runfile: MakeRunfile, workdir: Path) -> None:
    requeue_once = 'echo x >> $BATCHRUN_LOG_DIR/../n; [ "$BATCHRUN_REQUEUES" = 0 ] && exit 75; exit 0'
    make_runfile([requeue_once, "sleep 0.5; echo later"])
    for halt in ("--fail-fast", "--halt-now"):
        launch = run_batchrun("launch", "exp.runfile", "-j", "1", halt, "--rerun-all", cwd=workdir)
        assert launch.returncode == 0, launch.stdout + launch.stderr
        assert "stopped after the first failure" not in launch.stdout
        status = json.loads(run_batchrun("status", "exp.runfile", "--json", cwd=workdir).stdout)
        assert status["counts"]["succeeded"] == 2, status["counts"]


def test_a_detached_job_exiting_75_is_requeued_by_the_next_launch(make_runfile: MakeRunfile, workdir: Path) -> None:
    cmd = 'echo "$BATCHRUN_ATTEMPT $BATCHRUN_REQUEUES" >> runs.txt; [ -f "$BATCHRUN_LOG_DIR/ckpt" ] && exit 0; touch "$BATCHRUN_LOG_DIR/ckpt"; exit 75'
    make_runfile([cmd])
    assert run_batchrun("launch", "exp.runfile", "--detach", cwd=workdir).returncode == 0
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(cmd)
    wait_for(lambda: exit_text(log_dir) is not None and run_batchrun("status", "exp.runfile", cwd=workdir).stdout.startswith("exp.runfile: 1 job: 0 succeeded, 0 failed, 0 interrupted, 1 requeued"), what="the detached job's requeue")
    wait = run_batchrun("wait", "exp.runfile", "--timeout", "0", cwd=workdir)
    assert wait.returncode == 130 and "1 requeued" in wait.stdout, wait.stdout + wait.stderr
    launch = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    assert (workdir / "runs.txt").read_text() == "1 0\n2 1\n"


# -- 14. code versions (issue 24) ----------------------------------------------------------------------


def test_a_detached_launch_with_snapshot_runs_its_jobs_from_the_copy(workdir: Path) -> None:
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=workdir, check=True)
    (workdir / ".gitignore").write_text("runs/\n")
    (workdir / "prog.py").write_text('print("v1")\n')
    subprocess.run(["git", "add", "-A"], cwd=workdir, check=True)
    subprocess.run(["git", "commit", "-qm", "first"], cwd=workdir, check=True)
    go = workdir / "go"
    cmd = f"while [ ! -f {go} ]; do sleep 0.05; done; python3 prog.py"
    (workdir / "exp.runfile").write_text(cmd + "\n")
    assert run_batchrun("launch", "exp.runfile", "--detach", "--snapshot", cwd=workdir).returncode == 0
    (workdir / "prog.py").write_text('print("v2")\n')  # edited after the launch returned, before the job goes on
    go.touch()
    log_dir = workdir / "runs" / "exp" / "logs" / job_id_of(cmd)
    wait_for(lambda: exit_text(log_dir) is not None, what="the detached job to end")
    assert (log_dir / "out.log").read_text() == "v1\n"
    # The edited tree is another version: status lists the job as run under it.
    listed = run_batchrun("status", "exp.runfile", "--other-code", "--json", cwd=workdir)
    assert list(json.loads(listed.stdout)["jobs"]) == [job_id_of(cmd)]
