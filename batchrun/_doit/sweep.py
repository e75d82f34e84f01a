"""A gridspec's runfile as a doit task: regenerated only when the spec changed.

Used by a dodo.py (`sweep_task`, through `batchrun.dodo`) and by
`batchrun launch grid.yml` (`run_sweep_task`), so both decide the same way:
doit's file_dep check of the gridspec and target check of the runfile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from batchrun._doit.runner import BACKEND_NAME, SilentReporter

__all__ = ["run_sweep_task", "sweep_task"]


def sweep_task(gridspec: str | Path, runfile: str | Path | None = None) -> dict[str, Any]:
    """The doit task that writes a gridspec's runfile, regenerated when the spec changes."""
    from batchrun.sweeps.gridspec import default_runfile_path

    spec = Path(gridspec)
    out = Path(runfile) if runfile is not None else default_runfile_path(spec)

    def write() -> None:
        from batchrun.sweeps.gridspec import load_gridspec, write_runfile

        write_runfile(load_gridspec(spec), out)

    return {
        "actions": [write],
        "file_dep": [str(spec)],
        "targets": [str(out)],
        "clean": True,
        "doc": f"write {out} from the grid in {spec} (batchrun sweep)",
    }


def run_sweep_task(gridspec: Path, runfile: Path, dep_file: Path) -> bool:
    """Bring `runfile` up to date with `gridspec` through doit; True if it was rewritten.

    doit's file_dep check (an MD5 of the gridspec, kept in `<dep_file>.journal`) and
    target check decide: the runfile is regenerated only when the spec
    changed or the runfile is missing.

    Raises:
        GridspecError, RunfileError: as `gridspec.load_gridspec` / `write_runfile`.
    """
    ran: list[bool] = []
    errors: list[BaseException] = []
    task = sweep_task(gridspec, runfile)
    write = task["actions"][0]

    def action() -> bool:
        try:
            write()
        except BaseException as error:  # re-raised below, outside doit
            errors.append(error)
            return False
        ran.append(True)
        return True

    task["actions"] = [action]
    task["verbosity"] = 0
    main = DoitMain(
        ModuleTaskLoader({"task_sweep": lambda: task, "DOIT_CONFIG": {"reporter": SilentReporter}}),
        config_filenames=(),
        # The same backend as every batchrun doit run: the spec's state is
        # durable the moment the runfile is written (in `<dep_file>.journal`).
        extra_config={"GLOBAL": {"backend": BACKEND_NAME, "dep_file": str(dep_file)}, "BACKEND": {BACKEND_NAME: "batchrun._doit.backend:JournalDB"}},
    )
    main.run(["sweep"])
    if errors:
        raise errors[0]
    return bool(ran)
