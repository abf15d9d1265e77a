"""serve: the web dashboard over the same state store as every command."""

from __future__ import annotations

import ipaddress
import socket

import typer

from conveyor.cli.options import ConfigOption, workspace
from conveyor.errors import UsageError


def _loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in found)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""

    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
        port: int = typer.Option(8077, "--port", min=1, max=65535, help="Port to listen on."),
        config: str | None = ConfigOption,
    ) -> None:
        """The web dashboard: the fleet, history, one deployment live, DORA charts."""
        if not _loopback(host):
            # The dashboard has no sign-in yet: it answers only on this machine until it has.
            raise UsageError(f"--host {host}: the dashboard listens on a loopback address only (127.0.0.1, ::1) "
                             "until it has users and sign-in")
        try:
            import uvicorn

            from conveyor.web.app import create_app
        except ImportError as exc:
            raise UsageError(f"the dashboard needs the web extra: pip install 'conveyor-deploy[web]' ({exc})") from exc
        ws = workspace(ctx, config)
        typer.echo(f"Conveyor dashboard for {ws.config.app}: http://{host}:{port}/ (Ctrl-C stops it)")
        uvicorn.run(create_app(ws), host=host, port=port, log_level="warning")
