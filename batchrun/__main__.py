"""The entry point of `batchrun` and `python -m batchrun`.

The signal handlers go in before the CLI is imported (see `_signals`): a
signal during the imports is then honoured like one during the launch.
"""

import sys

from batchrun import _signals


def main() -> int:
    _signals.install()
    from batchrun.cli.app import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
