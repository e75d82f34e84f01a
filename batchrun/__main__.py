"""The entry point of `batchrun` and `python -m batchrun`.

The signal handlers go in before the CLI is imported (see `_signals`): a
signal during the imports is then honoured like one during the launch.
"""

import sys

from batchrun import _memory, _signals


def main() -> int:
    _signals.install()
    _memory.collect_less()  # before the imports, which alone made 61 collections
    from batchrun.cli.app import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
