"""What a launch shows while it runs and when it ends. Only the CLI uses it.

On a terminal: a live area redrawn in place by rich's `Live`: a progress bar
with done, failed, running and left, the elapsed time and an ETA from the
runtimes seen so far, then each running job with its slot and how long it has
run. Failed and interrupted jobs are printed above that area as they end.
Elsewhere (CI logs, nohup, pipes): one plain line per finished job, so logs
stay readable and greppable, and rich is never imported.

rich does what would otherwise be hand-written terminal code: redrawing a
multi-line area in place, fitting it to the terminal's width and height,
and keeping lines printed meanwhile above it.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from batchrun.cli.words import count, counts_text
from batchrun.launch.events import EventKind, JobEvent
from batchrun.launch.plan import Plan
from batchrun.results.tables import format_duration
from batchrun.store.records import State

if TYPE_CHECKING:
    from batchrun.launch.launch import LaunchResult

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from batchrun.results.best_so_far import BestSoFar

__all__ = ["Progress", "plan_lines", "summary_lines"]

# Redraws per second of the live area: enough to see time pass, cheap next to the jobs.
_REFRESH_PER_SECOND = 4
# Width of the progress bar in characters.
_BAR_WIDTH = 24
# Running jobs listed under the bar at most (then "... and N more"); also bounded by the terminal's height.
_MAX_RUNNING_SHOWN = 20
# Failed jobs the summary names; `batchrun status --state failed` lists them all.
_SUMMARY_FAILED = 5


class Progress:
    """Renders a launch's job events; the launch calls it from its worker threads.

    Args:
        out: where to write; a terminal gets the live area.
        total: jobs of the runfile.
        done_before: of those, finished before this launch (they count as done).
        failed_before: of those, failed before this launch.
        n_jobs: slots, for the ETA.
        quiet: show nothing while running.
    """

    def __init__(self, out: TextIO, total: int, done_before: int, failed_before: int, n_jobs: int, quiet: bool = False) -> None:
        self.out = out
        self.tty = out.isatty()
        self.quiet = quiet
        self.total = total
        self.done = done_before
        self.failed = failed_before
        self.finished_now = 0
        self.runtime_sum = 0.0
        # job id -> (start time, slot, command, adopted, what it holds beside its slot: `gpu=0,1 cpus=8`)
        self.running: dict[str, tuple[float, int | None, str, bool, str]] = {}
        self.n_jobs = n_jobs
        self.started = time.monotonic()
        # Guards the counters; never held while calling into rich (drawing
        # calls `_renderable`, which takes it).
        self._lock = threading.Lock()
        self._live: Live | None = None
        # Every write to the terminal while the live area is up, printed line or redraw, is made under
        # this lock, one at a time: rich erases the area by the height it last drew, so a line printed
        # by one worker while another's print (or a redraw) changes that height would be erased with it.
        self._draw_lock = threading.Lock()
        self._closed = threading.Event()
        # The best metric value so far (`best loss 0.123, line 17`), set by the CLI; see batchrun.results.best_so_far.
        self.best: BestSoFar | None = None
        # --follow: how many jobs wait for a slot (the launch's `queued`); the totals grow as lines come.
        self.following: Callable[[], int] | None = None
        # Ctrl-C (or SIGTERM) asked the launch to stop: the running jobs have --grace seconds to end.
        self.stopping = False

    def start(self) -> None:
        """Show the live area, on a terminal."""
        if not self.tty or self.quiet:
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out, highlight=False)
        # Redrawn by our own thread, under the draw lock, not by rich's refresh thread.
        self._live = Live(console=console, get_renderable=self._renderable, auto_refresh=False)
        self._live.start()
        threading.Thread(target=self._redraw, name="batchrun-display", daemon=True).start()

    def _redraw(self) -> None:
        while not self._closed.wait(1 / _REFRESH_PER_SECOND):
            with self._draw_lock:
                live = self._live
                if live is not None:
                    live.refresh()

    def __call__(self, event: JobEvent) -> None:
        line = None
        with self._lock:
            job = event.job
            if event.kind in (EventKind.START, EventKind.ADOPT):
                # Wall-clock start from the record: an adopted job started before this launch.
                holds = (event.record.holds or "").replace(";", " ")
                self.running[job.job_id] = (event.record.start or time.time(), event.slot, job.command, event.kind == EventKind.ADOPT, holds)
                if event.kind == EventKind.ADOPT and not self.tty and not self.quiet:
                    self.out.write(f"adopted   {job.job_id}  still running from an earlier launch: {job.command}\n")
                    self.out.flush()
            elif event.kind in (EventKind.RETRY, EventKind.REQUEUE):
                # Ended, failed or asked to run again (exit 75), and will run again in the same slot.
                self.running.pop(job.job_id, None)
                if self.quiet:
                    return
                rec = event.record
                if event.kind == EventKind.RETRY:
                    line = f"{'retrying':<12}{job.job_id}  attempt {rec.attempts} {rec.state} (exit {rec.status})  {job.command}"
                else:
                    line = f"{'requeued':<12}{job.job_id}  attempt {rec.attempts} exited 75, runs again (requeue {rec.requeues})  {job.command}"
                if not self.tty:
                    self.out.write(line + "\n")
                    self.out.flush()
                    return
            elif event.kind in (EventKind.QUEUE, EventKind.DROP):
                # --follow: a line entered the runfile, or left it before its job started.
                if event.kind == EventKind.QUEUE:
                    self.total += 1
                    label, note = "queued", f"line {job.lineno}"
                else:
                    self.total = max(0, self.total - 1)
                    label, note = "dropped", "left the runfile before it started; not run"
                if self.quiet:
                    return
                line = f"{label:<12}{job.job_id}  {note}  {job.command}"
                if not self.tty:
                    self.out.write(line + "\n")
                    self.out.flush()
                    return
                if event.kind == EventKind.QUEUE:
                    return  # the live line's totals show it
            elif event.kind == EventKind.SUBMIT:
                # --detach: started and left running; a later launch collects it.
                if not self.quiet and not self.tty:
                    self.out.write(f"{'started':<12}{job.job_id}  slot {event.slot}  {job.command}\n")
                    self.out.flush()
                return
            elif event.kind == EventKind.END:
                self.running.pop(job.job_id, None)
                rec = event.record
                if self.best is not None and event.metrics:
                    self.best.update(job.job_id, job.lineno)
                if rec.state in State.ENDED:
                    self.done += 1
                    self.finished_now += 1
                    self.runtime_sum += rec.runtime or 0.0
                    if rec.state not in (State.SUCCEEDED, State.STOPPED):
                        self.failed += 1
                if self.quiet:
                    return
                line = self._job_line(event)
                if not self.tty:
                    self.out.write(line + "\n")
                    self.out.flush()
                    return
        if line is None or event.record.state == State.SUCCEEDED:
            return
        from rich.text import Text

        with self._draw_lock:
            # A job that ends while the display closes (Ctrl-C: the interrupted ones) is printed plainly, never lost.
            live = self._live
            if live is None:
                self.out.write(line + "\n")
                self.out.flush()
                return
            # Above the live area: the failures stay on screen as it moves on.
            live.console.print(Text(line, style="red" if event.record.state in State.ENDED and event.record.state != State.STOPPED else "yellow"), overflow="ellipsis", no_wrap=True)
            live.refresh()  # else the area redrawn under the line shows the counts from before it

    def stop_requested(self) -> None:
        """Ctrl-C: say that the running jobs are being stopped, and how to skip the wait.

        Called from a signal handler, so it only starts a thread: the handler
        may have interrupted a thread that holds the display's lock.
        """
        if self.stopping or self.quiet:
            return
        self.stopping = True
        threading.Thread(target=self._say_stopping, name="batchrun-stopping", daemon=True).start()

    def _say_stopping(self) -> None:
        with self._lock:
            running = len(self.running)
            live = self._live
            if not running or live is not None:
                return  # the live area says it (`status_text`)
            self.out.write(f"batchrun: interrupted: {self._stopping_text(running)}\n")
            self.out.flush()

    @staticmethod
    def _stopping_text(running: int) -> str:
        return f"waiting for {count(running, 'job')} to stop (Ctrl-C again to kill now)"

    def _job_line(self, event: JobEvent) -> str:
        rec = event.record
        if rec.state == State.SUCCEEDED:
            label = "ok"
        elif rec.state == State.FAILED:
            label = f"FAILED({rec.status})"
        else:
            label = rec.state.upper()
        # Only a job that ended moves the counter; an interrupted one runs again.
        where = f"[{self.done}/{self.total}]" if rec.state in State.ENDED else "(runs again)"
        note = f"  ({event.note})" if event.note else ""
        return f"{label:<12}{event.job.job_id}  {format_duration(rec.runtime):>7}  {where}  {event.job.command}{note}"

    def eta(self) -> float | None:
        """Seconds left, from the mean runtime of the jobs this launch finished."""
        remaining = self.total - self.done
        if remaining <= 0:
            return 0.0
        if not self.finished_now:
            return None
        per_job = self.runtime_sum / self.finished_now
        return per_job * remaining / max(1, min(self.n_jobs, remaining))

    def status_text(self) -> str:
        """`120/500 done, 3 failed, 4 running, 376 left | 2m03s elapsed, ETA 5m10s`."""
        elapsed = time.monotonic() - self.started
        left = max(0, self.total - self.done - len(self.running))
        eta = self.eta()
        following = f" | following · {self.following()} queued" if self.following is not None else ""
        if self.stopping and self.running:
            return f"{self.done}/{self.total} done, {self.failed} failed | interrupted: {self._stopping_text(len(self.running))}"
        return (
            f"{self.done}/{self.total} done, {self.failed} failed, {len(self.running)} running, {left} left"
            f" | {format_duration(elapsed)} elapsed, ETA {format_duration(eta) if eta is not None else '-'}{following}"
        ) + (f" | {best}" if self.best is not None and (best := self.best.text()) else "")

    def _renderable(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            text = self.status_text()
            done, total, failed = self.done, self.total, self.failed
            running = sorted(self.running.items(), key=lambda item: (item[1][1] is None, item[1][1] or 0, item[1][0]))
        now = time.time()
        head = Table.grid(padding=(0, 1))
        head.add_row(ProgressBar(total=max(total, 1), completed=done, width=_BAR_WIDTH), Text(text, style="red" if failed else ""))
        rows: list[Any] = [head]
        height = self._live.console.height if self._live is not None else 24
        room = max(1, min(_MAX_RUNNING_SHOWN, height - 3))
        shown = running if len(running) <= room else running[: room - 1]
        for job_id, (start, slot, command, adopted, holds) in shown:
            where = (f"slot {slot}" if slot is not None else "slot -") + (f" {holds}" if holds else "")
            note = " (adopted)" if adopted else ""
            rows.append(Text(f"  {where:<7} {format_duration(now - start):>7}  {job_id[:8]}  {command}{note}", no_wrap=True, overflow="ellipsis", style="dim"))
        if len(shown) < len(running):
            rows.append(Text(f"  ... and {len(running) - len(shown)} more running", style="dim"))
        return Group(*rows)

    def close(self) -> None:
        """Draw the final state and stop redrawing; later lines are printed plainly."""
        self._closed.set()
        with self._draw_lock:
            with self._lock:
                live, self._live = self._live, None
            if live is not None:
                live.stop()  # draws the last state: outside the counters' lock, which drawing takes


def plan_lines(plan: Plan, total: int, mode: str) -> list[str]:
    """What the launch is about to do, in one line."""
    parts = [count(total, "job")]
    if plan.succeeded:
        parts.append(f"{plan.succeeded} already succeeded")
    if plan.failed_skipped:
        parts.append(f"{plan.failed_skipped} failed earlier (skipped)")
    if plan.stopped:
        parts.append(f"{plan.stopped} stopped early (skipped)")
    if plan.adopt:
        parts.append(f"{len(plan.adopt)} still running from an earlier launch (adopting)")
    if plan.rerun_unfinished:
        parts.append(f"{plan.rerun_unfinished} unfinished (running again)")
    if plan.ignored:
        parts.append(f"{plan.ignored} ignored (doit forget runs {'it' if plan.ignored == 1 else 'them'} again)")
    parts.append(f"{len(plan.to_run)} to run")
    if mode != "resume":
        parts.append(f"mode {mode}")
    line = ", ".join(parts)
    if plan.recovered:
        # Counted among those that succeeded or failed above, not beside them.
        line += f"; of these, {plan.recovered} ended while no launch was watching (collected now)"
    return [line]


def summary_lines(result: LaunchResult, runfile: str, failed_before: int) -> list[str]:
    """The end-of-launch summary: counts (as `status` and `wait` count), the failed jobs, how to see their logs and rerun them.

    `runfile` is the target as the user typed it (a gridspec, not its runfile), for the commands it suggests.
    """
    counts = result.counts
    name = runfile
    runfile = shlex.quote(runfile)
    lines = [f"batchrun: {name}: {counts_text(counts, terse=True)} ({result.ran} ran now)"]
    if result.failed:
        for job, rec in result.failed[:_SUMMARY_FAILED]:
            why = f"failed (exit {rec.status})" if rec.state == State.FAILED else str(rec.state)
            lines.append(f"  {why}: {job.job_id}  line {job.lineno}  {job.command}")
        more = result.failures - _SUMMARY_FAILED
        if more > 0:
            lines.append(f"  ... and {more} more: batchrun status {runfile} --state failed,timeout,killed")
        if failed_before:
            lines.append(f"  {failed_before} of them ended in an earlier launch and {'was' if failed_before == 1 else 'were'} skipped")
        first = result.failed[0][0]
        lines.append(f"  see a failed job's output: batchrun logs {runfile} {first.job_id[:8]} --err  (or its line number)")
        lines.append(f"  rerun the failed jobs with: batchrun launch {runfile} --retry-failed")
    halted = result.halted
    if halted:
        stopped = [f"{counts[State.INTERRUPTED]} interrupted"] if counts[State.INTERRUPTED] else []
        stopped += [f"{counts[State.PENDING]} pending (never started)"] if counts[State.PENDING] else []
        rest = f": {', '.join(stopped)}; they run with: batchrun launch {runfile}" if stopped else ""
        lines.append(f"  stopped after the first failure (--{halted}){rest}")
    elif result.interrupted:
        lines.append(f"  interrupted: unfinished jobs run again with: batchrun launch {runfile}")
    elif result.drained:
        pending = counts[State.PENDING]
        rest = f"; {count(pending, 'job')} did not start; they run with: batchrun launch {runfile}" if pending else ""
        lines.append(f"  stopped by batchrun stop{rest}")
    if result.detached:
        lines.append(f"  {count(result.detached, 'job')} started and left running; follow them with: batchrun status {runfile}")
    if result.metadata_written:
        lines.append(f"  metadata: {result.metadata_path}")
    return lines
