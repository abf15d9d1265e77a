"""serve and user: the web dashboard over the same state store as every command, and its users."""

from __future__ import annotations

import sys

import typer

from conveyor.cli.options import ConfigOption, workspace
from conveyor.errors import UsageError

user_app = typer.Typer(name="user", no_args_is_help=True, help="The dashboard's users (argon2 hashes in the "
                       "state store).", context_settings={"help_option_names": ["-h", "--help"]})


def _needs_web(exc: ImportError) -> UsageError:
    return UsageError(f"the dashboard needs the web extra: pip install 'conveyor-deploy[web]' ({exc})")


def _password() -> str:
    """The new password: asked twice on a terminal; else the first line of stdin (never an argument)."""
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


@user_app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user's name (letters, digits, . _ @ + -)."),
    config: str | None = ConfigOption,
) -> None:
    """Add a dashboard user, or set a new password for one. The password is read from the terminal (asked
    twice), or from the first line of stdin: never from the command line."""
    try:
        from conveyor.operations.users import add_user
    except ImportError as exc:  # pragma: no cover - the module imports argon2 only when it hashes
        raise _needs_web(exc) from exc
    ws = workspace(ctx, config)
    try:
        new = add_user(ws.store, name, _password())
    except ImportError as exc:
        raise _needs_web(exc) from exc
    typer.echo(f"{'added' if new else 'new password for'} user {name}")


@user_app.command("remove")
def remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user to remove."),
    config: str | None = ConfigOption,
) -> None:
    """Remove a dashboard user: their sessions stop working at once (audited)."""
    from conveyor.operations.users import remove_user

    ws = workspace(ctx, config)
    remove_user(ws.store, name, ws.user)
    typer.echo(f"removed user {name}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.add_typer(user_app, name="user")

    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (behind a TLS proxy for "
                                 "anything but this machine: the session cookie is Secure)."),
        port: int = typer.Option(8077, "--port", min=1, max=65535, help="Port to listen on."),
        config: str | None = ConfigOption,
    ) -> None:
        """The web dashboard: the fleet, history, one deployment live, DORA charts, approvals."""
        try:
            import uvicorn

            from conveyor.web.app import create_app
        except ImportError as exc:
            raise _needs_web(exc) from exc
        ws = workspace(ctx, config)
        app_ = create_app(ws)
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"Conveyor dashboard for {ws.config.app}: http://{shown}:{port}/ (Ctrl-C stops it)")
        uvicorn.run(app_, host=host, port=port, log_level="warning", proxy_headers=False)
