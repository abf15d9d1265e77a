"""`conveyor demo`: a sample app and a local fleet, deployed, promoted, rolled back (the run: conveyor.demo)."""

from __future__ import annotations

from pathlib import Path

import typer

from conveyor.cli.options import interactive, stderr


def register(app: typer.Typer) -> None:
    """Add the demo command to the app."""

    @app.command()
    def demo(
        directory: Path = typer.Option(Path("conveyor-demo"), "--dir", help="Where to build the demo."),
    ) -> None:
        """Build a sample app and a local fleet; deploy two releases through staging and production."""
        from conveyor.cli.display import Display
        from conveyor.demo.run import run_demo

        console = stderr()
        run_demo(directory, console, [Display(console, live=interactive())])
