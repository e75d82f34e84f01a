"""The `batchrun` command line: parses, calls the core, prints, returns an exit code.

One module per command group (`status`, `results`, `queue`), the live display,
and the arguments several commands share (`target`). Nothing below this folder
prints or exits.
"""

from batchrun.cli.app import main

__all__ = ["main"]
