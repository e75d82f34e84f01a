"""The entry point: a signal at any instant of a launch's start gives 130.

Each test places the signal at one exact instant by a `sitecustomize` hook
that sends it to the launch's own process there (during an import, or in
the middle of `Launch.prepare`), so the outcome does not depend on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_batchrun

from batchrun import _signals

MakeRunfile = Callable[..., Path]

_HOOK = """
    import os, sys

    SIG = int(os.environ["BR_TEST_SIGNAL"])
    AT = os.environ["BR_TEST_AT"]

    if AT.startswith("import:"):
        class _SignalOnImport:
            # Sends the signal as the module starts to be imported.
            def find_spec(self, name, path=None, target=None):
                if name == AT[len("import:"):]:
                    sys.meta_path.remove(self)
                    os.kill(os.getpid(), SIG)
                return None

        sys.meta_path.insert(0, _SignalOnImport())
    else:
        import batchrun.store.journal as journal

        method = AT.split(".")[1]  # Journal.load, Journal.open: inside Launch.prepare
        original = getattr(journal.Journal, method)

        def signalled(self, *args):
            os.kill(os.getpid(), SIG)
            return original(self, *args)

        setattr(journal.Journal, method, signalled)
"""

_INSTANTS = ["import:batchrun.cli.app", "import:batchrun.launch.launch", "import:batchrun.cli.display", "Journal.load", "Journal.open"]
# How the launch is started: as `python -m batchrun`, and as the installed
# `batchrun` script (its entry point, loaded as the script's wrapper does).
_ENTRY_SCRIPT = (
    "import sys; from importlib.metadata import entry_points; "
    "[ep] = entry_points(group='console_scripts', name='batchrun'); sys.argv[0] = 'batchrun'; sys.exit(ep.load()())"
)


@pytest.mark.parametrize("entry", ["python-m", "script"])
@pytest.mark.parametrize("at", _INSTANTS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["TERM", "INT", "HUP"])
def test_a_signal_as_a_launch_starts_exits_130_and_runs_nothing(make_runfile: MakeRunfile, workdir: Path, tmp_path: Path, entry: str, at: str, sig: int) -> None:
    side = workdir / "side.txt"
    make_runfile([f"echo 0 >> {side}", f"echo 1 >> {side}"])
    assert run_batchrun("launch", "exp.runfile", "-q", cwd=workdir).returncode == 0
    make_runfile([f"echo 0 >> {side}", f"echo 1 >> {side}", f"echo 2 >> {side}"])
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(_HOOK))
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "BR_TEST_SIGNAL": str(sig), "BR_TEST_AT": at}
    start = [sys.executable, "-m", "batchrun"] if entry == "python-m" else [sys.executable, "-c", _ENTRY_SCRIPT]
    proc = subprocess.run([*start, "launch", "exp.runfile"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert "interrupted" in proc.stdout + proc.stderr
    assert side.read_text() == "0\n1\n"  # no job started
    # The records are intact: the next launch runs the new line alone.
    proc = run_batchrun("launch", "exp.runfile", "-q", cwd=workdir)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert side.read_text() == "0\n1\n2\n"


def test_other_commands_stop_on_a_signal_as_before(make_runfile: MakeRunfile, workdir: Path, tmp_path: Path) -> None:
    """Only a launch holds signals back; `status` noted one during its imports and stops with 130."""
    make_runfile(["true"])
    assert run_batchrun("launch", "exp.runfile", "-q", cwd=workdir).returncode == 0
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(textwrap.dedent(_HOOK))
    env = {**os.environ, "PYTHONPATH": str(hooks), "BR_TEST_SIGNAL": str(signal.SIGTERM), "BR_TEST_AT": "import:batchrun.cli.app"}
    proc = subprocess.run([sys.executable, "-m", "batchrun", "status", "exp.runfile"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (130, "batchrun: interrupted\n")


def test_install_notes_signals_and_restore_gives_the_handlers_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in _signals.HANDLED}
    assert _signals.install()
    try:
        assert not _signals.install()  # already in place
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert _signals.take_pending() == [signal.SIGTERM, signal.SIGINT]
        assert _signals.take_pending() == []
    finally:
        _signals.restore()
    assert {sig: signal.getsignal(sig) for sig in _signals.HANDLED} == before
    _signals.restore()  # twice is harmless
