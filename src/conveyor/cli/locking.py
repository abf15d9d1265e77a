"""lock and unlock."""

from __future__ import annotations

import typer

from conveyor.cli.options import ConfigOption, JsonOption, print_json, stdout, workspace


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""

    @app.command()
    def lock(
        ctx: typer.Context,
        environment: str = typer.Argument(..., help="The environment to hold."),
        reason: str = typer.Option(..., "--reason", help="Why it is held (shown to whoever tries to deploy)."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Hold an environment: deploys and rollbacks exit 3 until it is unlocked."""
        from conveyor.operations.locking import lock as take
        from conveyor.state.store import lock_json

        ws = workspace(ctx, config)
        take(ws, environment, reason)
        holder = ws.store.lock_holder(environment)
        if as_json:
            print_json({"locked": True, "lock": lock_json(holder) if holder else None})
        else:
            stdout().print(f"{environment} locked: {reason}")

    @app.command()
    def unlock(
        ctx: typer.Context,
        environment: str = typer.Argument(..., help="The environment to release."),
        force: bool = typer.Option(False, "--force", help="Also remove a running deployment's lock."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Release an environment held by `conveyor lock` (or, with --force, by a deployment)."""
        from conveyor.operations.locking import unlock as release
        from conveyor.state.store import lock_json

        ws = workspace(ctx, config)
        previous = release(ws, environment, force=force)
        if as_json:
            print_json({"unlocked": previous is not None, "previous": lock_json(previous) if previous else None})
        elif previous is None:
            stdout().print(f"{environment} was not locked")
        else:
            stdout().print(f"{environment} unlocked (was: {previous.describe()})")
