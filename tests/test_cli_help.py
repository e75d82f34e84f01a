"""Every subcommand documents itself: `help=` for the command list, an example in its description.

The subcommands are found in the parser, so a new one is covered as soon as
it is added.
"""

from __future__ import annotations

import argparse

import pytest

from batchrun.cli import app as cli


def subcommands() -> tuple[argparse._SubParsersAction[argparse.ArgumentParser], dict[str, argparse.ArgumentParser]]:
    parser = cli._build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action, dict(action.choices)
    raise AssertionError("the batchrun parser has no subcommands")


NAMES = sorted(subcommands()[1])


def test_the_parser_has_every_known_subcommand() -> None:
    assert {"launch", "sweep", "init", "status", "logs", "failed", "plan"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_subcommand_has_help_and_an_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    action, parsers = subcommands()
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    assert helps.get(name), f"batchrun {name} has no help="
    description = parsers[name].description or ""
    assert f"Example: batchrun {name}" in description, f"batchrun {name}'s description has no example"
    # The command list shows the help; `batchrun NAME --help` shows the example.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert f"{name}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"Example: batchrun {name}" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("name", NAMES)
def test_every_option_of_a_subcommand_has_help(name: str) -> None:
    parser = subcommands()[1][name]
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help, f"batchrun {name} {'/'.join(action.option_strings) or action.dest} has no help="
