"""A tricky runfile through the real CLI: the compact job table and entry blocks change nothing users see.

The expectations come from the one-Job-per-line parser (`test_jobtable.reference_parse`):
the same ids, line numbers and duplicate warnings, the same metadata.json
(every entry, in runfile order, one a line), and a status table listing the
same jobs.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_batchrun
from test_jobtable import reference_parse

# Duplicates (also after stripping), blank and # lines, CRLF and CR, non-ASCII
# (with non-ASCII spaces at the ends), a separator str.strip removes, a long
# line, and no newline at the end.
TEXT = (
    "\ufeffecho one\r\n"
    "echo two\n"
    "\n"
    "# a comment\n"
    "  echo one  \n"
    "echo 'é ü' --k=v\r"
    "\u3000echo 'é ü' --k=v\n"
    "\x1cecho sep\n"
    "echo " + "x" * 5000 + "\n"
    "echo two\n"
    "exit 3"
)


def test_launch_and_status_of_a_tricky_runfile(workdir: Path) -> None:
    (workdir / "exp.runfile").write_bytes(TEXT.encode())
    jobs, duplicates, _digest = reference_parse(TEXT)
    done = run_batchrun("launch", "exp.runfile", "-j", "2", cwd=workdir)
    assert done.returncode == 1, done.stderr  # `exit 3` fails
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings == [f"batchrun: warning: exp.runfile:{again}: same command as line {first}; it runs once" for _c, first, again in duplicates]
    assert len(duplicates) == 3

    text = (workdir / "runs" / "exp" / "metadata.json").read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0] == "{" and lines[-2:] == ["}", ""]
    entries = json.loads(text)
    assert list(entries) == [job_id for _c, job_id, _l in jobs]
    assert [(e["command"], e["line"]) for e in entries.values()] == [(c, n) for c, _i, n in jobs]
    assert [e["state"] for e in entries.values()] == ["succeeded"] * (len(jobs) - 1) + ["failed"]
    # One entry a line, rendered as json.dumps renders it.
    for line, (job_id, entry) in zip(lines[1:-2], entries.items(), strict=True):
        assert line.rstrip(",") == f"  {json.dumps(job_id)}: {json.dumps(entry, ensure_ascii=False)}"

    status = run_batchrun("status", "exp.runfile", "--command", cwd=workdir)
    assert status.returncode == 0, status.stderr
    out = status.stdout.splitlines()
    assert out[0] == f"exp.runfile: {len(jobs)} jobs: {len(jobs) - 1} succeeded, 1 failed, 0 interrupted, 0 running, 0 pending"
    rows = out[out.index(next(line for line in out if line.startswith("LINE"))) + 1 :]
    assert [row.split()[0] for row in rows] == [str(n) for _c, _i, n in jobs]
    assert [row.split()[1] for row in rows] == [job_id[:8] for _c, job_id, _n in jobs]
    assert all(row.endswith(f"  {command}") for row, (command, _i, _n) in zip(rows, jobs, strict=True))

    again = run_batchrun("launch", "exp.runfile", cwd=workdir)
    assert "0 ran now" in again.stdout, again.stdout
    assert (workdir / "runs" / "exp" / "metadata.json").read_text(encoding="utf-8") == text
