"""Options shared by several commands, and the pieces every command uses to start."""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

import typer

from conveyor.operations.workspace import Workspace
from conveyor.secrets import mask, mask_json

if TYPE_CHECKING:  # rich loads when something is printed through it, not with every command (--json never)
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

CONFIG_HELP = "Config file (default ./conveyor.yml, or $CONVEYOR_CONFIG)."

ConfigOption = typer.Option(None, "-c", "--config", help=CONFIG_HELP, metavar="FILE")
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")


def workspace(ctx: typer.Context, config: str | None) -> Workspace:
    """The workspace for a command: its own -c, else the global one."""
    root = ctx.find_root().obj or {}
    return Workspace.load(config or root.get("config"))


def styled(markup: str, *data: str) -> Text:
    """Styled text from `markup` whose `{}` slots are filled with `data`, escaped and masked: data (a lock
    reason, a host's output) is never read as markup, so `[/oops]` or `[link=…]` in it is shown as written."""
    from rich.markup import escape
    from rich.text import Text

    return Text.from_markup(markup.format(*(escape(mask(d)) for d in data)))


def stdout() -> Console:
    """A console for results; wide when not a terminal, so logs keep whole release ids. It reads no markup:
    what it prints is data unless it is `styled`."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, markup=False, emoji=False,
                   width=None if sys.stdout.isatty() else 200)


def stderr() -> Console:
    """A console for progress and messages."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False,
                   width=None if sys.stderr.isatty() else 200)


# Columns whose values people copy into a command (`--release`, `--to`): never cut, never wrapped.
WHOLE_COLUMNS = frozenset({"release", "id"})


@cache
def _masked_table() -> type[Table]:
    from rich.table import Table

    class MaskedTable(Table):
        """A table whose cells are masked before they are laid out: a secret folded over two lines of a
        narrow column would escape a mask applied to the printed lines."""

        def add_row(self, *renderables: Any, **options: Any) -> None:
            super().add_row(*(mask(r) if isinstance(r, str) else r for r in renderables), **options)

    return MaskedTable


def results_table(*headers: str) -> Table:
    """A borderless table in which release ids stay whole: other columns fold onto more lines instead."""
    from rich.table import Column

    columns = [Column(h, no_wrap=True, overflow="ignore", min_width=len(h)) if h in WHOLE_COLUMNS
               else Column(h, overflow="fold") for h in headers]
    return _masked_table()(*columns, box=None, pad_edge=False)


def print_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(mask_json(_plain(document)), indent=2) + "\n")


def _plain(document: Any) -> Any:
    """The document with everything JSON cannot hold turned into text first, so masking sees it."""
    return json.loads(json.dumps(document, default=str))


def interactive() -> bool:
    """Whether a person is at a terminal to answer questions."""
    return sys.stdin.isatty() and sys.stderr.isatty()
