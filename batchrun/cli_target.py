"""The arguments every read-only command shares: which runs directory it reads.

`status`, `logs`, `failed`, `plan`, `results`, `report`, `kill`, `stop` and
`wait` all name their runfile, gridspec or runs directory the same way, with
the original tool's options for a runs directory kept elsewhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from batchrun.metadata import DEFAULT_METADATA_NAME

__all__ = ["target_parser"]


def target_parser() -> argparse.ArgumentParser:
    """A parent parser (`parents=[...]`) with the target and its runs-directory options."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("target", type=Path, metavar="RUNFILE|GRIDSPEC|RUNS_DIR", help="a runfile, a gridspec (its runfile <name>.runfile here), or a runs directory")
    where.add_argument("--accounting_dir", "--accounting-dir", dest="accounting_dir", type=Path, default=None, metavar="DIR", help="the runs directory the launch was given with --accounting_dir")
    where.add_argument("--state_db_filename", "--state-db-filename", dest="state_db_filename", default=DEFAULT_METADATA_NAME, metavar="NAME", help="name of the metadata file (default metadata.json)")
    return where
