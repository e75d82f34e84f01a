"""`batchrun ui`: parse, start the dashboard's server, print its URL, stop on Ctrl-C.

The server is `batchrun.ui.server` (the `ui` extra: tornado, plotly, Optuna),
imported only here and only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from batchrun.errors import UsageError

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("ui",)


def add_parsers(subparsers: Any) -> None:
    """Add `ui` to the CLI's subparsers."""
    ui = subparsers.add_parser(
        "ui",
        help="serve a live dashboard of the runs directories under DIR (local, no account, no network)",
        description=(
            "Serve a web dashboard of every runs directory under DIR (default: the current directory): their "
            "states and launches, and per sweep, live, the runs table with filters, parallel coordinates, the "
            "metric against each parameter, parameter importance, history curves, the best so far, means over "
            "seeds, a comparison of two sweeps, each run's logs, and buttons to kill a job or stop a launch. "
            "It listens on 127.0.0.1 and prints one URL with a secret token; requests without it are refused. "
            "Needs the ui extra: pip install 'batchrun[ui]'. Example: batchrun ui . --port 8765"
        ),
    )
    ui.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR", help="the folder whose runs directories to show (default: the current directory)")
    ui.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only; anyone who can reach another address and has the URL can kill your jobs)")
    ui.add_argument("--port", type=_port, default=None, help="the port (default 8765, or the next free one; 0: any free port)")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; 0 then (stopping the server is how it ends)."""
    try:
        import plotly  # noqa: F401 - only to tell a missing extra apart from a bug
        import tornado  # noqa: F401
    except ImportError:
        raise UsageError("batchrun ui needs tornado and plotly: pip install 'batchrun[ui]'") from None
    from batchrun.ui.server import serve

    root = args.dir
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")

    def ready(url: str) -> None:
        print(f"batchrun: serving the runs directories under {root.resolve()}", flush=True)
        print(f"    {url}", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            sys.stderr.write(f"batchrun: warning: listening on {args.host}: anyone who can reach it and has this URL can see your runs and kill your jobs\n")
        print("batchrun: Ctrl-C to stop", flush=True)

    serve(root, args.host, args.port, on_ready=ready)
    print("batchrun: ui stopped", flush=True)
    return 0
