"""consistency: the stack hosts run, component × environment/region/role, and where it drifts."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.options import ConfigOption, JsonOption, print_json, results_table, stdout, styled, workspace
from conveyor.gates.drift import names, shown


def render_consistency(document: dict[str, Any]) -> None:
    """The matrix as a person reads it: a table per component, the build's and this machine's values, drift."""
    out = stdout()
    local = document.get("local") or {}
    for component in document["components"]:
        table = results_table("environment", "region", "role", "hosts", "values", "differing")
        for row in (r for r in document["matrix"] if r["component"] == component):
            values = row["values"]
            count = sum(len(h) for h in values.values()) + len(row["unreadable"])
            common = row["common"]
            odd = [f"{', '.join(h)}: {shown(v)}" for v, h in values.items() if v != common]
            odd += [f"{host}: unreadable ({error})" for host, error in row["unreadable"].items()]
            text = ", ".join(shown(v) for v in values) or "-"
            table.add_row(row["environment"], row["region"], row["role"], str(count),
                          text if row["consistent"] else styled("[yellow]{}[/yellow]", text), "; ".join(odd))
        out.print(styled("[bold]{}[/bold]", component))
        if not table.rows:
            out.print("  no host has answered yet (a deployment or `status --verify` asks them)", markup=False)
        else:
            out.print(table)
        built = [f"{env} ({doc['release']}): {shown(doc['values'][component])}"
                 for env, doc in document["build"].items()
                 if doc.get("release") and doc["values"].get(component) is not None]
        if built:
            out.print(f"  built with: {'; '.join(built)}", markup=False, emoji=False)
        if component in local:
            reading = local[component]
            here = shown(reading["value"]) if reading["value"] is not None else f"error: {reading['error']}"
            out.print(f"  this machine: {here}", markup=False, emoji=False)
    if document["consistent"]:
        out.print(styled("[green]consistent[/green]: {}", _scope(document)))
        return
    out.print(styled("[yellow]drift[/yellow]:"))
    for finding in document["drift"]:
        hosts = f" (differing: {names(finding['hosts'])})" if finding["hosts"] else ""
        out.print(f"  - {finding['detail']}{hosts}", markup=False, emoji=False)


def _scope(document: dict[str, Any]) -> str:
    match = document["match"]
    agree = f"; {', '.join(match)} agree" if len(match) > 1 else ""
    return f"each role agrees within {', '.join(document['environments'])}{agree}"


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""

    @app.command()
    def consistency(
        ctx: typer.Context,
        environments: list[str] = typer.Argument(None, help="Only these environments (default: all)."),
        local: bool = typer.Option(False, "--local", help="Probe this machine too (a laptop, the CI runner) "
                                   "and compare it with the environments."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """The stack hosts run: component x environment/region/role, the build's values, drift named. Exits
        0 when everything agrees, 1 when something drifts (like diff), 2 for bad input."""
        from conveyor.operations.consistency import consistency as read_consistency

        ws = workspace(ctx, config)
        try:
            document = read_consistency(ws, environments or [], local=local)
        finally:
            ws.close()
        if as_json:
            print_json(document)
        else:
            render_consistency(document)
        if not document["consistent"]:
            raise typer.Exit(1)
