"""Fault injection for tests: put this directory on PYTHONPATH and name a fault.

Python imports `sitecustomize` at start-up, so a `python -m batchrun` started
with `PYTHONPATH=tests/data/faults` and one of the variables below stops (or
stalls) itself at one exact instant, standing for a kill -9 or a preemption
there. Nothing here is imported unless a test asks for it.

    BRFAULT_KILL_SPAWN=N         SIGKILL itself on the N-th job start (`LocalExecutor.start`
                                 or, for --detach, `LocalExecutor.start_detached`: after the
                                 start record, before the process exists; for `start_noted`,
                                 whose helper writes the start record, the helper kills the
                                 launch and itself there)
    BRFAULT_QUEUE_HOLD=S         a job may wait S s in a slot's helper behind the job there
                                 (`helpers.QUEUE_HOLD`), so that a test can act while it waits
    BRFAULT_KILL_RETRY_SPAWN=1   SIGKILL itself on spawning a job's retry (`out.1.log` exists)
    BRFAULT_KILL_EXIT_READ=N     SIGKILL itself on the N-th `jobfiles.read_exit_record`, the one
                                 reader of exit records outside the executors (settlement:
                                 after the liveness probe, before the read)
    BRFAULT_SLOW_EXIT_READ=S     the first `read_exit_record` that finds nothing sleeps S s first
    BRFAULT_SLOW_PROBE=S         the first liveness probe that finds a job running sleeps S s
                                 before it answers
    BRFAULT_DROP_KILL=1          the first SIGKILL to a job's group is not sent (a
                                 delivery that has not happened yet)
    BRFAULT_KILL_AFTER_APPEND=N  SIGKILL itself right after the N-th `runfile.append_commands`
                                 (a bayes launch's new points are on disk, none has started)
    BRFAULT_KILL_AFTER_STOP_SIGNAL=1
                                 SIGKILL itself right after the first signal of a stop reached a
                                 job's group (`LocalExecutor.signal`: the stop was noted before it)
    BRFAULT_END_BEFORE_STOP_SIGNAL=GATE
                                 before the first signal of a stop is sent (it was noted), create
                                 the file GATE and wait until the job, which waits for it, has
                                 ended and been recorded: the job ends on its own between its
                                 stop's note and its signal
    BRFAULT_SLOW_END=S|GATE      once the first watched job's wait returned (its shell ended and
                                 its record is written), sleep S s (or wait until the file GATE
                                 exists) before the launch records it
    BRFAULT_SLOW_ENDS=1          with BRFAULT_SLOW_END: every watched job's end is held so, not
                                 only the first
    BRFAULT_SLOW_FINAL_WRITE=S|GATE
                                 sleep S s (or wait until the file GATE exists) before the
                                 launch's last write of metadata.json
    BRFAULT_KILL_AFTER_REQUEUE=1 SIGKILL itself right after the journal records a requeued
                                 attempt (exit 75), before the next attempt's start record
    BRFAULT_PACK=1               every runfile's bytes are packed (`runfile.packed`), in blocks of
                                 97 bytes: a short runfile is held as a long one is (not a fault)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any


def _hold(how: str) -> None:
    """Sleep `how` seconds, or, when it names a file, wait until the test creates it (60 s at most): the test says when."""
    try:
        time.sleep(float(how))
    except ValueError:
        deadline = time.monotonic() + 60
        while not os.path.exists(how) and time.monotonic() < deadline:
            time.sleep(0.01)


def _has_exit_record(runs_dir: str, job_id: str) -> bool:
    """Whether the job's supervisor wrote its exit record: a line of its launch's exit log (`.exits/`), or its own `exit` file.

    Read here, not through `exitlog.lookup`, so the launch's own cache of those files is left as it was.
    """
    import glob

    from batchrun.executors import exitlog

    if os.path.exists(f"{runs_dir}/logs/{job_id}/exit"):
        return True
    start = f"{job_id} ".encode()
    for path in glob.glob(f"{runs_dir}/{exitlog.FOLDER}/*"):
        try:
            with open(path, "rb") as file:
                if any(line.startswith(start) for line in file):
                    return True
        except OSError:
            continue
    return False


def _install() -> None:
    env = os.environ
    if not any(name.startswith("BRFAULT_") for name in env):
        return
    from pathlib import Path

    from batchrun.executors import jobfiles
    from batchrun.executors.local import executor as local

    lock = threading.Lock()
    calls = {"spawn": 0, "read": 0}
    once = {"slow_read": False, "slow_probe": False, "drop": False}

    if "BRFAULT_KILL_SPAWN" in env or "BRFAULT_KILL_RETRY_SPAWN" in env:
        nth = int(env.get("BRFAULT_KILL_SPAWN", "0"))
        retry = env.get("BRFAULT_KILL_RETRY_SPAWN") == "1"
        detached = local.LocalExecutor.start_detached

        def start_detached(self: local.LocalExecutor, dispatcher: object, job_id: str, command: str, log_dir: str, env: dict[str, str]) -> str:
            with lock:
                calls["spawn"] += 1
                n = calls["spawn"]
            if n == nth or (retry and os.path.exists(f"{log_dir}/out.1.log")):
                os.kill(os.getpid(), signal.SIGKILL)
            return detached(self, dispatcher, job_id, command, log_dir, env)  # type: ignore[arg-type]

        local.LocalExecutor.start_detached = start_detached  # type: ignore[method-assign]
        start = local.LocalExecutor.start

        def start_job(self: local.LocalExecutor, job_id: str, command: str, log_dir: str, env: dict[str, str], request: Any = None) -> str:
            with lock:
                calls["spawn"] += 1
                n = calls["spawn"]
            if n == nth or (retry and os.path.exists(f"{log_dir}/out.1.log")):
                os.kill(os.getpid(), signal.SIGKILL)
            return start(self, job_id, command, log_dir, env, request)

        local.LocalExecutor.start = start_job  # type: ignore[method-assign]
        start_noted = local.LocalExecutor.start_noted

        def start_noted_job(self: local.LocalExecutor, job_id: str, command: str, log_dir: str, env: dict[str, str], *rest: Any) -> Any:
            with lock:
                calls["spawn"] += 1
                n = calls["spawn"]
            if n == nth or calls.get("armed") or (retry and os.path.exists(f"{log_dir}/out.1.log")):
                env = {**env, "BATCHRUN_TEST_HELPER_KILL_AFTER_START_LINE": "1"}
                started = start_noted(self, job_id, command, log_dir, env, *rest)
                # A job given back unstarted (it waited behind a long one) passes the fault on to the next start.
                calls["armed"] = started is None
                return started
            return start_noted(self, job_id, command, log_dir, env, *rest)

        local.LocalExecutor.start_noted = start_noted_job  # type: ignore[method-assign]

    if "BRFAULT_QUEUE_HOLD" in env:
        from batchrun.executors.local import helpers

        helpers.QUEUE_HOLD = local.QUEUE_HOLD = float(env["BRFAULT_QUEUE_HOLD"])

    if "BRFAULT_KILL_EXIT_READ" in env or "BRFAULT_SLOW_EXIT_READ" in env:
        nth = int(env.get("BRFAULT_KILL_EXIT_READ", "0"))
        pause = float(env.get("BRFAULT_SLOW_EXIT_READ", "0"))
        read = jobfiles.read_exit_record

        def read_exit_record(log_dir: Path, *args: object) -> tuple[int, float] | None:
            with lock:
                calls["read"] += 1
                n = calls["read"]
            if n == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            found = read(log_dir, *args)  # type: ignore[arg-type]
            if found is None and pause and not once["slow_read"]:
                once["slow_read"] = True
                time.sleep(pause)
            return found

        jobfiles.read_exit_record = read_exit_record  # type: ignore[assignment]

    if "BRFAULT_SLOW_PROBE" in env:
        pause = float(env["BRFAULT_SLOW_PROBE"])
        held = jobfiles.job_lock_held

        def job_lock_held(log_dir: Path | str, *args: object) -> bool:
            answer = held(log_dir, *args)  # type: ignore[arg-type]
            if answer and not once["slow_probe"]:
                once["slow_probe"] = True
                time.sleep(pause)
            return answer

        # The local executor's probe (settlement) and the wait for an adopted job's lock.
        local.job_lock_held = job_lock_held  # type: ignore[assignment]
        jobfiles.job_lock_held = job_lock_held  # type: ignore[assignment]

    if env.get("BRFAULT_DROP_KILL") == "1":
        send = local.LocalExecutor.signal

        def signal_job(self: local.LocalExecutor, job_id: str, ref: str | None, sig: int) -> bool:
            if sig == signal.SIGKILL and not once["drop"]:
                once["drop"] = True
                return True
            return send(self, job_id, ref, sig)

        local.LocalExecutor.signal = signal_job  # type: ignore[method-assign]

    if env.get("BRFAULT_KILL_AFTER_STOP_SIGNAL") == "1":
        deliver = local.LocalExecutor.signal

        def signal_then_die(self: local.LocalExecutor, job_id: str, ref: str | None, sig: int) -> bool:
            hit = deliver(self, job_id, ref, sig)
            if sig and hit:
                os.kill(os.getpid(), signal.SIGKILL)
            return hit

        local.LocalExecutor.signal = signal_then_die  # type: ignore[method-assign]

    if "BRFAULT_END_BEFORE_STOP_SIGNAL" in env:
        gate = env["BRFAULT_END_BEFORE_STOP_SIGNAL"]
        send_late = local.LocalExecutor.signal

        def end_then_signal(self: local.LocalExecutor, job_id: str, ref: str | None, sig: int) -> bool:
            if sig and not once.get("end_first"):
                once["end_first"] = True
                Path(gate).touch()
                log_dir = f"{self.options.runs_dir}/logs/{job_id}"
                deadline = time.monotonic() + 30
                while (jobfiles.job_lock_held(log_dir) or not _has_exit_record(self.options.runs_dir, job_id)) and time.monotonic() < deadline:
                    time.sleep(0.01)
            return send_late(self, job_id, ref, sig)

        local.LocalExecutor.signal = end_then_signal  # type: ignore[method-assign]

    if "BRFAULT_SLOW_END" in env:
        from batchrun.launch import oneattempt

        end_hold = env["BRFAULT_SLOW_END"]
        every = env.get("BRFAULT_SLOW_ENDS") == "1"
        # The runner's wait for a job it watches (with its checkpoint signal, if any).
        wait_job = oneattempt.wait_job_warned

        def slow_wait_job(*args: object, **kwargs: object) -> int | None:
            returncode = wait_job(*args, **kwargs)  # type: ignore[arg-type]
            if returncode is not None and (not once.get("slow_end") or every):
                once["slow_end"] = True
                _hold(end_hold)
            return returncode

        oneattempt.wait_job_warned = slow_wait_job  # type: ignore[assignment]

    if "BRFAULT_SLOW_FINAL_WRITE" in env:
        from batchrun.store import metasync

        write_hold = env["BRFAULT_SLOW_FINAL_WRITE"]
        write_final = metasync.MetadataSync.write_final

        def slow_write_final(self: metasync.MetadataSync) -> object:
            _hold(write_hold)
            return write_final(self)

        metasync.MetadataSync.write_final = slow_write_final  # type: ignore[method-assign,assignment]

    if "BRFAULT_KILL_AFTER_APPEND" in env:
        from batchrun.runfile import file as runfile

        nth = int(env["BRFAULT_KILL_AFTER_APPEND"])
        append = runfile.append_commands

        def append_commands(*args: object) -> list[runfile.Job]:
            jobs = append(*args)  # type: ignore[arg-type]
            with lock:
                calls["append"] = calls.get("append", 0) + 1
                n = calls["append"]
            if n == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return jobs

        runfile.append_commands = append_commands  # type: ignore[assignment]

    if env.get("BRFAULT_KILL_AFTER_REQUEUE") == "1":
        from batchrun.store.journal import Journal
        from batchrun.store.records import State

        unfinished = Journal.record_unfinished

        def record_unfinished(self: Journal, job_id: str, attempt: int, start: float, end: float, state: str = State.INTERRUPTED) -> object:
            rec = unfinished(self, job_id, attempt, start, end, state)
            if state == State.REQUEUED:
                os.kill(os.getpid(), signal.SIGKILL)
            return rec

        Journal.record_unfinished = record_unfinished  # type: ignore[assignment,method-assign]

    if env.get("BRFAULT_PACK") == "1":
        from batchrun.runfile import packed

        packed.PACK_FROM, packed.BLOCK = 0, 97


_install()
