"""What a launch shows while it runs and when it ends. Only `cli.py` uses it.

On a terminal: one progress line rewritten in place (done, failed, running,
left, elapsed, ETA from the runtimes seen so far). Elsewhere (CI logs, nohup,
pipes): one plain line per finished job, so logs stay readable and greppable.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

from batchrun.journal import State
from batchrun.launch import JobEvent, LaunchResult, Plan

__all__ = ["Progress", "format_duration", "plan_lines", "summary_lines"]

# Redraws of the terminal line per second at most: drawing costs more than a
# trivial job.
_REDRAW_INTERVAL = 0.1


def format_duration(seconds: float | None) -> str:
    """`0.31s`, `12.0s`, `4m05s`, `2h03m`."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Renders a launch's job events to a stream; safe to call from any thread."""

    def __init__(self, out: TextIO, total: int, done_before: int, failed_before: int, n_jobs: int, quiet: bool = False) -> None:
        self.out = out
        self.tty = out.isatty()
        self.quiet = quiet
        self.total = total
        self.done = done_before
        self.failed = failed_before
        self.to_do = total - done_before
        self.finished_now = 0
        self.runtime_sum = 0.0
        self.running: dict[str, float] = {}
        self.n_jobs = n_jobs
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._line_len = 0
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self.tty and not self.quiet:
            self._ticker = threading.Thread(target=self._tick, name="batchrun-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._draw(force=True)

    def __call__(self, event: JobEvent) -> None:
        with self._lock:
            if event.kind in ("start", "adopt"):
                self.running[event.job.job_id] = time.monotonic()
                if event.kind == "adopt" and not self.tty and not self.quiet:
                    self.out.write(f"adopted   {event.job.job_id}  still running from an earlier launch: {event.job.command}\n")
            elif event.kind == "retry":
                self.running.pop(event.job.job_id, None)
                if not self.tty and not self.quiet:
                    rec = event.record
                    self.out.write(f"{'retrying':<12}{event.job.job_id}  attempt {rec.attempts} {rec.state} (exit {rec.status})  {event.job.command}\n")
                    self.out.flush()
            elif event.kind == "end":
                self.running.pop(event.job.job_id, None)
                rec = event.record
                if rec.state in State.FINISHED:
                    self.done += 1
                    self.finished_now += 1
                    self.runtime_sum += rec.runtime or 0.0
                    if rec.state != State.SUCCEEDED:
                        self.failed += 1
                if self.tty:
                    self._draw()
                elif not self.quiet:
                    self.out.write(self._job_line(event) + "\n")
                    self.out.flush()

    def _job_line(self, event: JobEvent) -> str:
        rec = event.record
        if rec.state == State.SUCCEEDED:
            label = "ok"
        elif rec.state == State.FAILED:
            label = f"FAILED({rec.status})"
        else:
            label = rec.state.upper()
        return f"{label:<12}{event.job.job_id}  {format_duration(rec.runtime):>7}  [{self.done}/{self.total}]  {event.job.command}"

    def _status_text(self) -> str:
        elapsed = time.monotonic() - self.started
        left = self.total - self.done - len(self.running)
        eta = "-"
        if self.finished_now:
            # Average runtime per job over the slots actually in use.
            per_job = self.runtime_sum / self.finished_now
            remaining = self.total - self.done
            eta = format_duration(per_job * remaining / max(1, min(self.n_jobs, remaining)))
        width = 20
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return (
            f"[{bar}] {self.done}/{self.total} done, {self.failed} failed, "
            f"{len(self.running)} running, {max(left, 0)} left | {format_duration(elapsed)} elapsed, ETA {eta}"
        )

    def _draw(self, force: bool = False) -> None:
        if not self.tty or self.quiet:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < _REDRAW_INTERVAL:
            return
        self._last_draw = now
        text = self._status_text()
        columns = shutil.get_terminal_size((100, 20)).columns
        text = text[: max(10, columns - 1)]
        pad = max(0, self._line_len - len(text))
        self.out.write("\r" + text + " " * pad)
        self.out.flush()
        self._line_len = len(text)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.tty and not self.quiet:
                self._draw(force=True)
                self.out.write("\n")
                self.out.flush()


def plan_lines(plan: Plan, total: int, mode: str) -> list[str]:
    """What the launch is about to do, in one or two lines."""
    parts = [f"{total} jobs"]
    if plan.succeeded:
        parts.append(f"{plan.succeeded} already succeeded")
    if plan.failed_skipped:
        parts.append(f"{plan.failed_skipped} failed earlier (skipped)")
    if plan.recovered:
        parts.append(f"{plan.recovered} finished while no launch was watching")
    if plan.adopt:
        parts.append(f"{len(plan.adopt)} still running from an earlier launch (adopting)")
    if plan.rerun_unfinished:
        parts.append(f"{plan.rerun_unfinished} unfinished (running again)")
    to_run = len(plan.to_run)
    parts.append(f"{to_run} to run")
    if mode != "resume":
        parts.append(f"mode {mode}")
    return [", ".join(parts)]


def summary_lines(result: LaunchResult, runfile: str, failed_before: int) -> list[str]:
    """The end-of-launch summary: counts, failures, where the records are."""
    counts = result.counts
    total = sum(counts.values())
    parts = [f"{counts[State.SUCCEEDED]} succeeded"]
    failed = counts[State.FAILED] + counts[State.TIMEOUT]
    if failed:
        parts.append(f"{failed} failed")
    for state in (State.INTERRUPTED, State.RUNNING, State.PENDING):
        if counts[state]:
            parts.append(f"{counts[state]} {state if state != State.PENDING else 'not run'}")
    lines = [f"batchrun: {total} jobs: " + ", ".join(parts) + f" ({result.ran} ran now)"]
    if result.failed:
        shown = result.failed[:5]
        for job, rec in shown:
            lines.append(f"  failed (exit {rec.status}): {job.job_id}  {job.command}")
            lines.append(f"    see {result.runs_dir / 'logs' / job.job_id / 'err.log'}")
        if len(result.failed) > len(shown):
            lines.append(f"  ... and {len(result.failed) - len(shown)} more failed")
        if failed_before:
            lines.append(f"  {failed_before} of them failed in an earlier launch and were skipped")
        lines.append(f"  rerun the failed jobs with: batchrun launch {runfile} --retry-failed")
    if result.halted:
        not_run = counts[State.PENDING] + counts[State.INTERRUPTED]
        lines.append(f"  stopped after the first failure (--{result.halted}); {not_run} jobs did not run")
    if result.interrupted and not result.halted:
        lines.append(f"  interrupted: unfinished jobs run again with: batchrun launch {runfile}")
    lines.append(f"  metadata: {result.metadata_path}")
    return lines
