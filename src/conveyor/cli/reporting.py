"""report: figures read from the history (`conveyor report dora`)."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.options import ConfigOption, JsonOption, print_json, results_table, stdout, workspace
from conveyor.operations.dora import duration

report_app = typer.Typer(name="report", no_args_is_help=True, help="Figures read from the deployment history.",
                         context_settings={"help_option_names": ["-h", "--help"]})


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.add_typer(report_app, name="report")


def _rate(figures: dict[str, Any]) -> str:
    rate = figures["change_failure_rate"]
    return "-" if rate is None else f"{rate:.0%} ({figures['failures']}/{figures['changes']})"


def _restore(figures: dict[str, Any]) -> str:
    text = duration(figures["time_to_restore_median_seconds"])
    return f"{text}, {figures['unrestored']} open" if figures["unrestored"] else text


@report_app.command("dora")
def dora(
    ctx: typer.Context,
    environment: str | None = typer.Argument(None, help="Only this environment."),
    weeks: int = typer.Option(12, "--weeks", min=1, max=520, help="How many ISO weeks, this one included."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """DORA figures per environment and week: deployment frequency, lead time for changes (commit to
    deployed), change failure rate (failed or rolled back) and time to restore (medians)."""
    from conveyor.operations.dora import report

    document = report(workspace(ctx, config), environment, weeks=weeks)
    if as_json:
        print_json(document)
        return
    out = stdout()
    out.print(f"DORA figures from {document['since']} to {document['until']} ({weeks} ISO weeks)")
    for env, entry in document["environments"].items():
        total = entry["total"]
        out.print("")
        out.print(f"{env}: {total['deployments']} deployments ({total['deployments_per_day']:g} a day), lead time "
                  f"{duration(total['lead_time_median_seconds'])}, change failure rate {_rate(total)}, "
                  f"time to restore {_restore(total)}")
        table = results_table("week", "deployments", "lead time", "change failure rate", "time to restore")
        for week in entry["weeks"]:
            table.add_row(week["week"], str(week["deployments"]), duration(week["lead_time_median_seconds"]),
                          _rate(week), _restore(week))
        out.print(table)
