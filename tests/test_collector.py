"""The CLI's cycle collector: collecting less often from before its imports, a launch's loaded heap frozen, all undone after (`_memory`)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchrun._memory import YOUNG_THRESHOLD

# A fresh interpreter notes the collector's threshold as the CLI's first module is looked for.
_PROBE = textwrap.dedent(
    """
    import gc, sys

    seen = []

    class Note:
        def find_spec(self, name, path, target=None):
            if name == "batchrun.cli.app":
                seen.append(gc.get_threshold()[0])

    sys.meta_path.insert(0, Note())
    sys.argv = ["batchrun"]
    from batchrun.__main__ import main

    main()
    print(seen[0], gc.get_threshold()[0])
    """
)


def test_batchrun_collects_less_often_from_before_the_cli_is_imported() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    during, after = map(int, done.stdout.split())
    assert during >= YOUNG_THRESHOLD and after >= YOUNG_THRESHOLD


def test_the_cli_collects_less_often_and_gives_the_collector_back_as_it_was(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import batchrun.cli.app as app

    seen: list[tuple[int, int, int]] = []
    real = app._main
    monkeypatch.setattr(app, "_main", lambda argv: seen.append(gc.get_threshold()) or real(argv))
    before = gc.get_threshold()
    assert app.main(["status", str(tmp_path / "none.runfile")]) == 2
    assert seen == [(max(before[0], YOUNG_THRESHOLD), *before[1:])] and seen[0] != before
    assert gc.get_threshold() == before


def test_a_launch_freezes_its_loaded_heap_before_the_jobs_and_the_cli_unfreezes_it_after(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import batchrun.cli.app as app
    import batchrun.cli.launch as cli_launch

    frozen: list[int] = []
    real = cli_launch.freeze_heap
    monkeypatch.setattr(cli_launch, "freeze_heap", lambda: real() or frozen.append(gc.get_freeze_count()))
    runfile = tmp_path / "exp.runfile"
    runfile.write_text("true 1\ntrue 2\n")
    monkeypatch.chdir(tmp_path)
    assert gc.get_freeze_count() == 0
    assert app.main(["launch", str(runfile), "-q"]) == 0
    assert len(frozen) == 1 and frozen[0] > 1000  # the modules, the runfile, the records: all left out of collections
    assert gc.get_freeze_count() == 0
    assert app.main(["launch", str(runfile), "-q"]) == 0  # nothing to run (a quick answer): nothing frozen
    assert len(frozen) == 1


def test_a_callers_own_frozen_heap_stays_frozen() -> None:
    from batchrun._memory import quiet_collector

    gc.freeze()
    try:
        with quiet_collector():
            pass
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
