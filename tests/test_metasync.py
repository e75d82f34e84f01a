"""Unit tests of the metadata sync: the stamp, the first build, the flushes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from batchrun.journal import Journal
from batchrun.metadata import RunsDir
from batchrun.metasync import MetadataSync
from batchrun.runfile import load_runfile


def _sync(tmp_path: Path) -> MetadataSync:
    runfile = tmp_path / "exp.runfile"
    runfile.write_text("echo a\necho b\n")
    runs_dir = RunsDir.for_runfile(runfile, tmp_path / "acct")
    runs_dir.create()
    return MetadataSync(runs_dir, load_runfile(runfile), Journal(runs_dir.path), threading.RLock(), lambda err: None)


def test_the_stamp_says_whether_metadata_json_is_up_to_date(tmp_path: Path) -> None:
    sync = _sync(tmp_path)
    assert not sync.stamp_matches()
    sync.build()
    assert sync.write_final() is None
    sync.write_stamp()
    assert sync.stamp_matches()
    sync.journal.open()
    sync.journal.record_start(sync.runfile.jobs[0].job_id, 1, 1.0, 0, "h")
    sync.journal.close()
    assert not sync.stamp_matches(), "the journal grew: the view is stale"


def test_changes_are_rendered_at_the_flush(tmp_path: Path) -> None:
    sync = _sync(tmp_path)
    sync.build()
    sync.flush()
    job = sync.runfile.jobs[1]
    sync.journal.open()
    rec = sync.journal.record_end(job.job_id, 1, 0, 1.0, 2.0)
    sync.journal.close()
    sync.update(job, rec)
    sync.flush()
    entries = json.loads(sync.runs_dir.metadata.read_text())
    assert entries[job.job_id]["state"] == "succeeded" and entries[sync.runfile.jobs[0].job_id]["state"] == "pending"
