"""init, validate, schema and build."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from conveyor.cli.options import ConfigOption, JsonOption, print_json, stderr, stdout, workspace
from conveyor.errors import UsageError


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""

    @app.command()
    def init(
        path: Path = typer.Argument(Path("conveyor.yml"), help="Where to write the starter config."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    ) -> None:
        """Write a commented starter conveyor.yml that validates."""
        if path.exists() and not force:
            raise UsageError(f"{path} exists; use --force to overwrite it")
        text = (resources.files("conveyor.config") / "starter.yml").read_text(encoding="utf-8")
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        stderr().print(f"wrote {path}; edit it, then run `conveyor validate -c {path}`")

    @app.command()
    def validate(ctx: typer.Context, config: str | None = ConfigOption, as_json: bool = JsonOption) -> None:
        """Check the config: exit 0, or exit 2 with FILE:LINE: field.path: message lines."""
        ws = workspace(ctx, config)
        summary: dict[str, Any] = {
            "valid": True, "file": str(ws.loaded.path), "app": ws.config.app,
            "environments": {name: {"regions": list(env.regions),
                                    "hosts": sum(len(h) for r in env.regions.values() for h in r.hosts.values()),
                                    # regions whose hosts an inventory finds when a deployment starts
                                    "inventories": [n for n, r in env.regions.items() if r.inventory is not None]}
                             for name, env in ws.config.environments.items()},
        }
        if as_json:
            print_json(summary)
        else:
            hosts = sum(e["hosts"] for e in summary["environments"].values())
            found = sum(len(e["inventories"]) for e in summary["environments"].values())
            more = f", and {found} region(s) whose hosts an inventory finds" if found else ""
            stdout().print(f"{ws.loaded.path}: valid ({len(summary['environments'])} environment(s), "
                           f"{hosts} host(s) listed{more})")

    @app.command()
    def schema() -> None:
        """Print the JSON Schema of conveyor.yml (for editors)."""
        from conveyor.config.models import Config

        document = Config.model_json_schema()
        document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        document["title"] = "conveyor.yml"
        print(json.dumps(document, indent=2))

    @app.command()
    def build(
        ctx: typer.Context,
        ref: str | None = typer.Option(None, "--ref", help="A git ref to record with the release."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Build (or reuse) the release of the current artifact and print its id."""
        from conveyor.operations.release import build as build_release

        ws = workspace(ctx, config)
        release, created = build_release(ws, ref=ref)
        if as_json:
            print_json({**release.manifest(), "created": created})
        else:
            if not created:
                stderr().print(f"same content as {release.id}: reusing it")
            print(release.id)
