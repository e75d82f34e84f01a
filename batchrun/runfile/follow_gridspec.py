"""Following a gridspec while a launch runs: sweep it again each time it is saved, and follow its runfile.

`launch grid.yml --follow` uses this; `follow.RunfileFollower` does the following.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from batchrun.errors import BatchrunError
from batchrun.runfile.file import Job, Runfile
from batchrun.runfile.follow import PARTIAL_SETTLE, FollowChange, RunfileFollower

__all__ = ["GridspecFollower"]


class GridspecFollower:
    """Follow a gridspec: on each change, sweep it into its runfile again, and follow that.

    `resweep` writes the runfile from the gridspec (by default
    `sweep.write_runfile(sweep.load_gridspec(gridspec), runfile)`; the launch
    may pass its doit sweep task instead). The gridspec is taken as swept
    when the follower is made.
    """

    def __init__(self, gridspec: Path, runfile: Path, known: Runfile | Iterable[Job] = (), resweep: Callable[[], object] | None = None, settle: float = PARTIAL_SETTLE) -> None:
        self.gridspec = Path(gridspec)
        self.runfile = RunfileFollower(runfile, known, settle)
        self._resweep = resweep or self._write_runfile
        self._lock = threading.Lock()
        self._sig = self._stat()
        self._error: BatchrunError | None = None

    def _stat(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.gridspec)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _write_runfile(self) -> None:
        from batchrun.sweeps import gridspec as sweep  # YAML and the sweep rules, only when following a gridspec

        sweep.write_runfile(sweep.load_gridspec(self.gridspec), self.runfile.path)

    def _refresh(self) -> None:
        with self._lock:
            sig = self._stat()
            if sig == self._sig or sig is None:
                return
            self._sig = sig
            try:
                self._resweep()
            except BatchrunError as err:
                self._error = err  # the old runfile stays; fixed by the next save

    def take(self) -> FollowChange | None:
        """As `RunfileFollower.take`, after sweeping a changed gridspec."""
        self._refresh()
        change = self.runfile.take()
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            change = change or FollowChange()
            change.error = error
        return change

    def wanted(self, job_id: str) -> bool:
        """As `RunfileFollower.wanted`, after sweeping a changed gridspec."""
        self._refresh()
        return self.runfile.wanted(job_id)

    def job(self, job_id: str) -> Job | None:
        return self.runfile.job(job_id)

    def jobs(self) -> list[Job]:
        return self.runfile.jobs()
