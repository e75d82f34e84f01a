"""doit commands batchrun replaces in every doit run (entry points `doit.COMMAND`).

- `dumpdb`: doit's own opens the dep_file as a dbm file, so it shows nothing
  of the json, sqlite3 or `batchrun` backends; this one loads the dodo.py
  and dumps its backend when that is `batchrun`, and otherwise (or with no
  dodo.py) runs doit's own. Stock doit's dumpdb never loads the dodo.py, so a
  dodo.py that cannot be loaded (a syntax error, a failing import) must not
  stop it either: the file is then dumped without it.
- `forget`: doit 0.37's bare `doit forget` fails with a TypeError when the
  dodo.py sets no `default_tasks`; this one forgets what a bare `doit` would
  run (every task that is not a subtask, with its subtasks), as doit's
  documentation says it does.
- `list` and `info`: for a batchrun job task, its status is the job's as
  `batchrun status` counts it: `doit list --status` marks a job that failed
  (done in resume mode: not run again) `F`, not `U`, and `doit info` of an
  ignored or failed job says so instead of "up-to-date".
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path
from typing import Any

from doit.cmd_base import DoitCmdBase
from doit.cmd_dumpdb import DumpDB as _DoitDumpDB
from doit.cmd_forget import Forget as _DoitForget
from doit.cmd_info import Info as _DoitInfo
from doit.cmd_list import List as _DoitList
from doit.cmd_list import opt_list_status
from doit.dependency import JSONCodec
from doit.exceptions import InvalidDodoFile

from batchrun._doit.backend import JournalDB, job_state
from batchrun._doit.values import VALUES_FILE, TaskValues
from batchrun.launch.plan import state_done
from batchrun.store.records import IGNORED, NOT_SUCCEEDED, State

__all__ = ["DumpDB", "Forget", "Info", "List"]

# `doit list --status`'s letter for a job that ended without succeeding: done for resume (not run again), yet not up to date.
_FAILED_LETTER = "F"


class Forget(_DoitForget):
    """doit's `forget`, whose bare form also works with no `default_tasks`."""

    name = "forget"

    def _execute(self, forget_sub: bool, forget_disable_default: bool, forget_all: bool) -> Any:
        if getattr(self, "sel_tasks", None) is None:
            self.sel_tasks = [task.name for task in self.task_list if not task.subtask_of]
        return super()._execute(forget_sub, forget_disable_default, forget_all)


class DumpDB(DoitCmdBase):
    """`doit dumpdb` that reads any backend: the dodo.py's own, journals included.

    doit's dumpdb opens the dep_file as a dbm file and so shows nothing of
    json, sqlite3 or this backend. With no dodo.py, or another backend, doit's
    own command runs.
    """

    name = "dumpdb"
    doc_purpose = "dump dependency DB"
    doc_usage = ""
    doc_description = None
    cmd_options = ()

    def execute(self, params: Any, args: Any) -> Any:
        try:
            return super().execute(params, args)
        except Exception as err:  # noqa: BLE001 - whatever loading the dodo.py raised
            if self.dep_manager is not None:
                raise  # the dodo loaded: a real error
            if not isinstance(err, InvalidDodoFile) or "not found" not in str(err).lower():
                sys.stderr.write(f"doit dumpdb: the dodo.py could not be loaded ({type(err).__name__}: {err}); dumping the file without it\n")
        return self._dump_file(params["dep_file"], args)

    def _dump_file(self, dep_file: str, args: Any) -> int:
        """The dep_file dumped without a dodo.py: batchrun's values journal when there is one, else doit's own dumpdb."""
        for candidate in (dep_file, VALUES_FILE):  # the file batchrun's DOIT_CONFIG names, as the dodo.py would say
            path = Path(candidate if candidate.endswith(".journal") else candidate + ".journal")
            if path.is_file():
                self.outstream.write(f"DB backend is 'batchrun' ({path}; job tasks are listed only with a loadable dodo.py)\n")
                for task, values in TaskValues(path, JSONCodec()).items():
                    self.outstream.write(f"{task} -> {pprint.pformat(values, indent=4, width=100)}\n")
                return 0
        return int(_DoitDumpDB(config=self.config).execute({"dep_file": dep_file}, args) or 0)

    def _execute(self) -> int:
        backend = self.dep_manager.backend
        if not isinstance(backend, JournalDB):
            self.dep_manager.close()  # a dbm file opened twice would be locked
            return int(_DoitDumpDB(config=self.config).execute({"dep_file": self.dep_manager.name}, []) or 0)
        self.outstream.write(f"DB backend is 'batchrun' ({backend.values_path} and each runs directory's jobs.journal)\n")
        for task, values in backend.items():
            self.outstream.write(f"{task} -> {pprint.pformat(values, indent=4, width=100)}\n")
        self.dep_manager.close()
        return 0


class List(_DoitList):
    """doit's `list`, whose `--status` marks a batchrun job that failed `F` (doit's own would say `U`)."""

    name = "list"
    STATUS_MAP = {**_DoitList.STATUS_MAP, "failed": _FAILED_LETTER}
    cmd_options = tuple(
        {**opt, "help": "print task status (R)un, (U)p-to-date, (I)gnored, (F)ailed: a batchrun job that failed, timed out or was killed (not run again unless retry_failed)"}
        if opt is opt_list_status else opt
        for opt in _DoitList.cmd_options
    )

    def _print_task(self, template: str, task: Any, status: bool, list_deps: bool, tasks: Any) -> None:
        known = job_state(task.name) if status else None
        if known is None or known[0] not in NOT_SUCCEEDED:
            super()._print_task(template, task, status, list_deps, tasks)
            return
        real = self.dep_manager.get_status

        def failed_status(task: Any, tasks: Any, *args: Any, **kwargs: Any) -> Any:
            found = real(task, tasks, *args, **kwargs)
            if found.status == "up-to-date":
                found.status = "failed"  # done for the mode, but not a success
            return found

        self.dep_manager.get_status = failed_status
        try:
            super()._print_task(template, task, status, list_deps, tasks)
        finally:
            self.dep_manager.get_status = real


class Info(_DoitInfo):
    """doit's `info`, which says a batchrun job's state where doit's "up-to-date" would mislead: ignored, or failed (done, not succeeded)."""

    name = "info"

    def _execute(self, pos_args: Any, hide_status: bool = False) -> Any:
        known = job_state(pos_args[0]) if len(pos_args) == 1 and not hide_status else None
        said = None
        if known is not None:
            state, rec, mode = known
            if state == IGNORED:
                said = "ignored (doit ignore): no doit run or batchrun launch runs it until doit forget"
            elif state in NOT_SUCCEEDED and rec is not None and state_done(rec.state, mode):
                exit_text = f", exit {rec.status}" if rec.status is not None and state == State.FAILED else ""
                said = f"{state}{exit_text}: not run again in mode {mode} (retry_failed runs it)"
        if said is None:  # doit's own answer, with the journal's reason when it would run
            return super()._execute(pos_args, hide_status)
        code = super()._execute(pos_args, hide_status=True)
        self.outstream.write(f"\n{'status':11s}: {said}\n")
        return code
