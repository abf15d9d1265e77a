"""Options shared by several commands, and the pieces every command uses to start."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from conveyor.operations.workspace import Workspace

CONFIG_HELP = "Config file (default ./conveyor.yml, or $CONVEYOR_CONFIG)."

ConfigOption = typer.Option(None, "-c", "--config", help=CONFIG_HELP, metavar="FILE")
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")


def workspace(ctx: typer.Context, config: str | None) -> Workspace:
    """The workspace for a command: its own -c, else the global one."""
    root = ctx.find_root().obj or {}
    return Workspace.load(config or root.get("config"))


def stdout() -> Console:
    """A console for results; wide when not a terminal, so logs keep whole release ids."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def stderr() -> Console:
    """A console for progress and messages."""
    return Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def print_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def interactive() -> bool:
    """Whether a person is at a terminal to answer questions."""
    return sys.stdin.isatty() and sys.stderr.isatty()
