"""Every command's ``--help`` ends with examples that the parser itself accepts."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from kie_uploader.cli.entry import build_parser


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf command (``dlq peek`` included) with its parser."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*path, name))
    return found or [(path, parser)]


LEAVES = commands(build_parser())


def test_the_commands_are_all_there() -> None:
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"backfill", "status", "list", "url", "refresh", "retry-failed", "redrive", "configure", "doctor",
            "info", "stats", "set-key", "dlq peek"} <= names  # fmt: skip


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_has_examples_that_parse(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    help_text = parser.format_help()
    assert "examples:" in help_text, help_text
    lines = help_text.split("examples:", 1)[1].strip().splitlines()
    # the kie-uploader commands of each line (a line may be a pipeline: `printf ... | kie-uploader set-key`)
    invocations = [
        shlex.split(part.split("<")[0])[1:]
        for line in lines
        for part in re.split(r"\s(?:\||&&|;)\s", line.split("  #")[0])
        if part.strip().startswith("kie-uploader ") or part.strip() == "kie-uploader"
    ]
    assert any(tuple(argv[: len(path)]) == path for argv in invocations), lines
    for argv in invocations:
        build_parser().parse_args(argv)  # exits (SystemExit) on an example that does not parse
