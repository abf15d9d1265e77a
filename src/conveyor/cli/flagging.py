"""flags: the matrix (`flags [ENV]`), `flags set`, `flags rollout`, `flags diff`.

`conveyor flags` alone (or with an environment) shows the matrix; a first word that is not a subcommand is
that environment (see `_FlagsGroup`).
"""

from __future__ import annotations

from typing import Any

import typer
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from conveyor.cli.deploying import _confirmation, _display, _finish, _shown_once
from conveyor.cli.options import ConfigOption, JsonOption, print_json, results_table, stdout, workspace
from conveyor.engine.plan import Plan
from conveyor.operations.workspace import Workspace


class _FlagsGroup(TyperGroup):
    """`flags [ENV]` is the matrix: a first word that names no subcommand is given to `show`."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


flags_app = typer.Typer(cls=_FlagsGroup, help="Feature flags per environment and region, rolled out like "
                        "releases (docs/flags.md). `conveyor flags [ENV] [--json]` shows every flag as each "
                        "region sees it, and where that comes from.", no_args_is_help=False)

RegionOption = typer.Option(None, "--region", help="One region (default: the whole environment).")
ReasonOption = typer.Option(None, "--reason", help="Why: recorded in history (required).")
YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


@flags_app.command("show", hidden=True)
def show(
    ctx: typer.Context,
    environment: str | None = typer.Argument(None, help="One environment (default: all)."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Every flag as each environment's regions see it: the variant served and where it comes from."""
    from conveyor.operations.flagging import matrix

    ws = workspace(ctx, config)
    document = matrix(ws, [environment] if environment else None)
    if as_json:
        print_json(document)
        return
    columns = [(env, region) for env, view in document["environments"].items() for region in view["regions"]]
    table = results_table("flag", *(f"{env}/{region}" for env, region in columns))
    for key in document["flags"]:
        table.add_row(key, *(_cell(document["environments"][env]["regions"][region][key])
                             for env, region in columns))
    stdout().print(table)


def _cell(resolved: dict[str, Any]) -> str:
    variant = resolved["variant"]
    if resolved["percent"] is not None:
        variant = f"{variant} {resolved['percent']}% (else {resolved['rest']})"
    elif resolved["state"] == "DISABLED" and resolved["source"] == "file":
        variant = f"{variant} (disabled)"
    source = resolved["source"]
    short = "file" if source == "file" else "conveyor.yml" if source.startswith("conveyor.yml") else "flags set"
    return f"{variant} ({short})"


@flags_app.command("set")
def set_flag(
    ctx: typer.Context,
    environment: str = typer.Argument(..., help="The environment."),
    flag: str = typer.Argument(..., help="The flag."),
    variant: str = typer.Argument(..., help="The variant every evaluation gets."),
    region: str | None = RegionOption,
    reason: str | None = ReasonOption,
    yes: bool = YesOption,
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Serve VARIANT of FLAG in ENV (or one --region), rolled out like a release: waves, canary, bakes."""
    _change(ctx, environment, flag, variant, None, region, reason, yes, config, as_json)


@flags_app.command("rollout")
def rollout(
    ctx: typer.Context,
    environment: str = typer.Argument(..., help="The environment."),
    flag: str = typer.Argument(..., help="The flag."),
    percent: int = typer.Option(..., "--percent", help="The share of evaluations (0-100) that get the variant."),
    variant: str | None = typer.Option(None, "--variant", help="The variant rolled out (default: a boolean "
                                       "flag's true one)."),
    region: str | None = RegionOption,
    reason: str | None = ReasonOption,
    yes: bool = YesOption,
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Serve a variant to PERCENT% of evaluations (flagd fractional targeting), the rest keeping theirs."""
    _change(ctx, environment, flag, variant, percent, region, reason, yes, config, as_json)


def _change(ctx: typer.Context, environment: str, flag: str, variant: str | None, percent: int | None,
            region: str | None, reason: str | None, yes: bool, config: str | None, as_json: bool) -> None:
    from conveyor.errors import UsageError
    from conveyor.operations.flagging import change, flag_set
    from conveyor.operations.request import Request

    ask = _confirmation(yes, as_json)
    ws = workspace(ctx, config)
    ws.environment(environment)
    if variant is None:
        known = flag_set(ws).flags.get(flag)
        on = [name for name, value in (known.variants.items() if known else ()) if value is True]
        if not on:
            raise UsageError(f"{flag} is not a boolean flag: name the variant to roll out with --variant")
        variant = on[0]
    chosen = variant
    subscribers = [] if as_json else _display()
    request = Request(environment, regions=[region] if region else [], reason=reason)
    confirm = _ask(ws, f"{flag} → {chosen}" + (f" for {percent}%" if percent is not None else "")) if ask else None
    try:
        result = _shown_once(lambda: change(ws, request, flag, chosen, percent=percent, subscribers=subscribers,
                                            confirm=confirm), as_json)
    finally:
        ws.close()
    _finish(result, as_json)


def _ask(ws: Workspace, what: str) -> Any:
    def ask(plan: Plan, _target: str) -> bool:
        regions = ", ".join(r.region for r in plan.regions)
        return typer.confirm(f"flags: {what} on {len(plan.hosts)} host(s) of {plan.environment} ({regions})?",
                             default=False, err=True)
    return ask


@flags_app.command("diff")
def diff(
    ctx: typer.Context,
    a: str = typer.Argument(..., help="One environment."),
    b: str = typer.Argument(..., help="The other."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Each flag as two environments' regions see it; the flags that differ first."""
    from conveyor.operations.flagging import diff as compare

    document = compare(workspace(ctx, config), a, b)
    if as_json:
        print_json(document)
        return
    table = results_table("flag", a, b)
    for row in sorted(document["flags"], key=lambda r: (r["same"], r["flag"])):
        table.add_row(("  " if row["same"] else "≠ ") + row["flag"], _sides(row[a]), _sides(row[b]))
    stdout().print(table)


def _sides(by_region: dict[str, str]) -> str:
    values = set(by_region.values())
    if len(values) == 1:
        return values.pop()
    return ", ".join(f"{region}: {value}" for region, value in by_region.items())


def register(app: typer.Typer) -> None:
    """Add the flags group to the app."""
    app.add_typer(flags_app, name="flags")


__all__ = ["register"]
