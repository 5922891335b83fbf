"""Every command's help explains every flag and argument, and shows every default."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from monitor.cli import _parser


def every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """A parser and every parser of the commands under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from every_parser(child)


PARSERS = list(every_parser(_parser()))


def takes_a_default(action: argparse.Action) -> bool:
    """A flag or optional argument that has a value when it is not given (a switch's False
    and a repeatable flag's empty list are no value)."""
    if isinstance(action, argparse._StoreTrueAction | argparse._HelpAction):
        return False
    if not action.option_strings and action.nargs != argparse.OPTIONAL:
        return False
    return (
        action.default is not None and action.default != [] and action.default != argparse.SUPPRESS
    )


def test_the_walk_reaches_every_command() -> None:
    progs = {p.prog for p in PARSERS}

    assert {"edge-monitor serve", "edge-monitor models build-demo", "edge-monitor db upgrade"} <= (
        progs
    )
    assert "edge-monitor model build-demo" not in progs


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_every_flag_has_help_and_shows_its_default(parser: argparse.ArgumentParser) -> None:
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            assert all(helps.values()), f"{parser.prog}: a command without help: {helps}"
            continue
        name = "/".join(action.option_strings) or action.dest
        if action.help == argparse.SUPPRESS:
            continue  # hidden on purpose (edge serve --token, refused with a message)
        assert action.help, f"{parser.prog} {name} has no help"
        shown = formatter._expand_help(action)
        if takes_a_default(action):
            assert f"(default: {action.default})" in shown, f"{parser.prog} {name}: {shown!r}"
    # Help renders: no stray % in a help text.
    assert parser.format_help()


def test_a_default_in_the_help_is_the_one_the_parser_uses() -> None:
    simulate = next(p for p in PARSERS if p.prog == "edge-monitor simulate")
    text = " ".join(simulate.format_help().split())

    assert "--rate RATE records per second per node (default: 5.0)" in text
    assert "--seed SEED random seed of the fleet's data (default: 0)" in text
    assert "--sites SITES sites the nodes are at (default: 4)" in text
    assert simulate.parse_args([]).sites == 4
