"""Every command and sub-command of the CLI shows help that documents each of its options."""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.testing import CliRunner

from imgorigin.cli import app

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path of names, command) for a click command and everything under it, depth first.

    Duck-typed (groups have ``commands``, options have ``param_type_name == "option"``): Typer may build on its
    own copy of click, whose classes are not ``click.Group`` / ``click.Option``."""
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


def test_the_tree_is_walked():
    paths = {path for path, _ in _commands(typer.main.get_command(app))}
    assert {(), ("calibrate",), ("verify",), ("bench",), ("bench", "verify")} <= paths


def test_help_of_every_command_lists_every_option():
    runner = CliRunner()
    missing = {}
    for path, command in _commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        text = ANSI.sub("", result.output)
        declared = [
            name
            for param in command.params
            if param.param_type_name == "option" and not param.hidden
            for name in (*param.opts, *param.secondary_opts)
            if name.startswith("--")
        ]
        absent = [name for name in declared if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]
        if absent:
            missing[" ".join(path) or "imgorigin"] = absent
    assert not missing, f"options missing from --help: {missing}"
