"""plan, deploy and rollback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from conveyor.cli.options import ConfigOption, JsonOption, interactive, print_json, stderr, stdout, workspace
from conveyor.config.values import format_duration
from conveyor.errors import UsageError
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.engine.plan import Plan
    from conveyor.engine.results import DeploymentResult

RegionOption = typer.Option([], "--region", "-r", help="Only this region (repeatable).")
RoleOption = typer.Option([], "--role", help="Only this role (repeatable).")
YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")

STEPS = {
    "deploy": ["probe: make the layout, read current and the journal",
               "receive + verify sha256 + unpack into releases/<id> + link shared (skipped if present)",
               "switch current atomically (rename), journal, restart",
               "checks", "prune to keep_releases (never current or previous)"],
    "rollback": ["probe: read current, the releases on disk and the journal",
                 "switch current back atomically, journal, restart", "checks"],
}


def plan_document(ws: Workspace, plan: Plan, release: str | None, kind: str) -> dict[str, Any]:
    """A plan as JSON: waves, regions, roles, batches and hosts, gates, and each host's steps."""
    from conveyor.operations.deploy import estimate_seconds, gates
    from conveyor.vcs.changes import plan_commits

    environment = ws.config.environments[plan.environment]
    total, per_host = estimate_seconds(ws, plan, kind)
    return {
        "environment": plan.environment, "kind": kind, "release": release,
        "waves": [[{
            "region": region.region,
            "roles": [{
                "role": role.role, "max_failures": role.max_failures,
                "canary_bake": ws.config.roles[role.role].canary_bake,
                "restart": ws.config.roles[role.role].restart,
                "checks": [c.describe() for c in ws.config.roles[role.role].checks],
                "batches": [{"number": b.number, "canary": b.canary, "hosts": [h.name for h in b.hosts]}
                            for b in role.batches],
            } for role in region.roles],
        } for region in wave] for wave in plan.waves],
        "hosts": len(plan.hosts),
        "skipped_regions": list(plan.skipped_regions),
        "gates": gates(ws, plan.environment, release, kind, regions=[r.region for r in plan.regions]),
        "steps": STEPS[kind],
        "bake": environment.bake,
        "on_failure": environment.on_failure,
        "checks": [c.describe() for c in environment.checks],
        "estimate": {"seconds": round(total, 1), "per_host_step": round(per_host, 2)},
        # region → {"running", "release", "commits": [{"sha", "author", "email", "subject"}], "note"}
        "commits": plan_commits(ws, plan.environment, [r.region for r in plan.regions],
                                release if kind == "deploy" else None),
        **_migrations(ws, plan, release, kind),
    }


def _migrations(ws: Workspace, plan: Plan, release: str | None, kind: str) -> dict[str, Any]:
    """The schema migrations a deploy would run per region, with their verdicts (when configured)."""
    if ws.config.migrations is None or kind != "deploy" or release is None:
        return {}
    from conveyor.operations.migrations import plan_migrations

    plans = plan_migrations(ws, plan.environment, [r.region for r in plan.regions], ws.artifacts.get(release))
    return {"migrations": {region: p.to_json() for region, p in plans.items()}}


def render_plan(document: dict[str, Any]) -> None:
    """Show a plan as a person reads it."""
    out = stdout()
    out.print(f"[bold]{document['kind']} {document['release'] or '(previous release)'} to "
              f"{document['environment']}[/bold]: {document['hosts']} host(s)")
    table = Table("wave", "region", "role", "batch", "hosts", box=None, pad_edge=False)
    for number, wave in enumerate(document["waves"], start=1):
        for region in wave:
            for role in region["roles"]:
                for batch in role["batches"]:
                    label = "canary" if batch["canary"] else str(batch["number"])
                    table.add_row(str(number), region["region"], role["role"], label, ", ".join(batch["hosts"]))
    out.print(table)
    for gate in document["gates"]:
        mark = "[green]open[/green]" if gate["open"] else "[red]closed[/red]"
        out.print(f"gate {gate['gate']}: {mark} — {gate['detail']}", markup=True)
    if document.get("bake"):
        out.print(f"bake between waves: {format_duration(document['bake'])}, watching: "
                  f"{'; '.join(document['checks']) or 'nothing (a pause)'}; on failure: {document['on_failure']}")
    for region, migrations in (document.get("migrations") or {}).items():
        for phase in ("contract", "expand", "waiting"):
            for item in migrations[phase]:
                when = "waits until every region runs it" if phase == "waiting" else f"runs before {region} switches"
                out.print(f"migration {region} {item['name']} ({item['phase']}, {item['class']}): {when}",
                          markup=False)
    out.print("each host: " + " → ".join(document["steps"]))
    estimate = document["estimate"]
    out.print(f"estimated duration: ~{format_duration(estimate['seconds'])} "
              f"(a host step takes ~{estimate['per_host_step']:g}s, from recent history)")
    if document.get("commits"):
        from conveyor.cli.inspecting import render_commits

        entries = list(document["commits"].values())
        if all(not e["commits"] and e["note"] == entries[0]["note"] for e in entries):
            # Nothing to list anywhere for the same reason (no git, nothing new): one line says it.
            out.print(f"commits going out: none{' — ' + entries[0]['note'] if entries[0]['note'] else ''}",
                      markup=False, emoji=False)
            return
        out.print("commits going out:")
        for region, entry in document["commits"].items():
            count = len(entry["commits"])
            out.print(f"  {region} (runs {entry['running'] or 'nothing yet'}): {count} commit"
                      f"{'' if count == 1 else 's'}", markup=False, emoji=False)
            render_commits(entry["commits"], indent="    ")
            if entry["note"]:
                out.print(f"    note: {entry['note']}", markup=False, emoji=False)


def _display() -> list[Any]:
    from conveyor.cli.display import Display

    return [Display(stderr(), live=interactive())]


def _confirm(ws: Workspace, kind: str) -> Any:
    def ask(plan: Plan, release: str) -> bool:
        render_plan(plan_document(ws, plan, release, kind))
        return typer.confirm(f"{kind} {release} to {len(plan.hosts)} host(s) of {plan.environment}?",
                             default=False, err=True)
    return ask


def _finish(result: DeploymentResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_json())
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    register_approvals(app)

    @app.command()
    def converge(
        ctx: typer.Context,
        environment: str = typer.Option(..., "--env", help="The environment this host belongs to."),
        region: str = typer.Option(..., "--region", help="The region this host belongs to."),
        role: str = typer.Option(..., "--role", help="What this host does (a role of conveyor.yml)."),
        host: str | None = typer.Option(None, "--host", help="This host's name (default: its hostname)."),
        root: str = typer.Option("/", "--root", hidden=True, help="Install under this directory (tests)."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """On a host that starts (cloud-init, a systemd unit): install the release its region runs, switch,
        restart and check it. Needs only read access to the artifact store. Running it again changes nothing."""
        from pathlib import Path

        from conveyor.operations.converge import converge as run_converge

        ws = workspace(ctx, config)
        subscribers = [] if as_json else _display()
        try:
            result = run_converge(ws, environment, region, role, name=host, root=Path(root),
                                  subscribers=subscribers)
        finally:
            ws.close()
        if as_json:
            print_json(result.to_json())
        else:
            stderr().print(f"{result.host} ({environment}/{region}, {role}): {result.status}: {result.message}",
                           markup=False)
        if result.exit_code:
            raise typer.Exit(result.exit_code)

    @app.command()
    def plan(
        ctx: typer.Context,
        environment: str = typer.Argument(..., help="The environment to plan for."),
        region: list[str] = RegionOption,
        role: list[str] = RoleOption,
        release: str | None = typer.Option(None, "--release", help="Release id (default: the newest built)."),
        rollback: bool = typer.Option(False, "--rollback", help="Plan a rollback instead of a deploy."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Show what a deploy would do: hosts, waves, batches, gates and steps. Changes nothing."""
        from conveyor.operations.deploy import Request, plan_for, resolve_release

        ws = workspace(ctx, config)
        ws.environment(environment)
        request = Request(environment, regions=region, roles=role, release=release)
        the_plan = plan_for(ws, request)
        kind = "rollback" if rollback else "deploy"
        chosen = None
        if not rollback:
            try:
                chosen = resolve_release(ws, release).id
            except UsageError:
                chosen = None  # nothing built yet: the plan still shows hosts and gates
        document = plan_document(ws, the_plan, chosen, kind)
        if as_json:
            print_json(document)
        else:
            render_plan(document)

    @app.command()
    def deploy(
        ctx: typer.Context,
        environment: str = typer.Argument(..., help="The environment to deploy to."),
        region: list[str] = RegionOption,
        role: list[str] = RoleOption,
        release: str | None = typer.Option(None, "--release", help="Release id, or `latest` (default: build now)."),
        reason: str | None = typer.Option(None, "--reason", help="Why: recorded in history and the lock."),
        resume: int | None = typer.Option(None, "--resume", help="Carry on a held deployment (accepts its "
                                          "inconclusive check).", metavar="ID"),
        break_glass: bool = typer.Option(False, "--break-glass", help="Deploy through a closed window "
                                         "(needs --reason; audited and announced)."),
        skip_promotion: bool = typer.Option(False, "--skip-promotion", help="Deploy a release that has not "
                                            "succeeded upstream (needs --reason; audited)."),
        auto: bool = typer.Option(False, "--auto", help="An automatic (pipeline) deploy: only where the "
                                  "environment has auto: true."),
        approval: int | None = typer.Option(None, "--request", help="Deploy an approved request.",
                                            metavar="ID"),
        yes: bool = YesOption,
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Deploy a release to an environment, wave by wave, region by region, batch by batch."""
        from conveyor.operations.deploy import Request, resume_request
        from conveyor.operations.deploy import deploy as run_deploy
        from conveyor.operations.release import build

        ws = workspace(ctx, config)
        ws.environment(environment)
        subscribers = [] if as_json else _display()
        confirm = _confirm(ws, "deploy") if (interactive() and not yes and not as_json) else None
        if resume is not None:
            if release or region:
                raise UsageError("--resume carries on a deployment as it was: no --release or --region with it")
            request = resume_request(ws, environment, resume, reason)
            request.roles = role
        else:
            request = Request(environment, regions=region, roles=role, release=release, reason=reason)
        if approval is not None:
            record = ws.store.approval(approval)
            if record is None:
                raise UsageError(f"no approval request #{approval}")
            if record["environment"] != environment:
                raise UsageError(f"approval #{approval} is for {record['environment']}, not {environment}")
            if release and release != record["release"]:
                raise UsageError(f"approval #{approval} is for {record['release']}, not {release}")
            request.release = record["release"]
            request.regions = request.regions or list(record["regions"])
        request.break_glass, request.skip_promotion, request.auto = break_glass, skip_promotion, auto
        request.approval = approval
        try:
            result = run_deploy(ws, request, subscribers=subscribers, confirm=confirm,
                                build=lambda: build(ws)[0])
        finally:
            ws.close()
        _finish(result, as_json)

    @app.command()
    def rollback(
        ctx: typer.Context,
        environment: str = typer.Argument(..., help="The environment to roll back."),
        region: list[str] = RegionOption,
        role: list[str] = RoleOption,
        to: str | None = typer.Option(None, "--to", help="The release to go back to (default: the previous)."),
        reason: str | None = typer.Option(None, "--reason", help="Why: recorded in history."),
        force: bool = typer.Option(False, "--force", help="Go back across an applied contract (or breaking) "
                                   "migration (needs --reason; audited)."),
        yes: bool = YesOption,
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Switch back to the previous release still on the hosts (no transfer), or to --to RELEASE."""
        from conveyor.operations.deploy import Request
        from conveyor.operations.deploy import rollback as run_rollback

        ws = workspace(ctx, config)
        ws.environment(environment)
        subscribers = [] if as_json else _display()
        confirm = _confirm(ws, "rollback") if (interactive() and not yes and not as_json) else None
        request = Request(environment, regions=region, roles=role, release=to, reason=reason, force=force)
        try:
            result = run_rollback(ws, request, subscribers=subscribers, confirm=confirm)
        finally:
            ws.close()
        _finish(result, as_json)


__all__ = ["register"]


def register_approvals(app: typer.Typer) -> None:
    """approve and approvals."""

    @app.command()
    def approve(
        ctx: typer.Context,
        approval_id: int = typer.Argument(..., help="The request to approve.", metavar="ID"),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Approve a deploy request made by someone else (environments with approval: required)."""
        from conveyor.operations.deploy import approve as run_approve

        ws = workspace(ctx, config)
        record = run_approve(ws, approval_id)
        if as_json:
            print_json(record)
        else:
            stdout().print(f"approved #{approval_id}: {record['release']} to {record['environment']} "
                           f"(requested by {record['requested_by']}); they run `conveyor deploy "
                           f"{record['environment']} --request {approval_id}`")

    @app.command()
    def approvals(
        ctx: typer.Context,
        environment: str | None = typer.Argument(None, help="Only this environment."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Deploy requests, newest first: who asked, who approved, whether they were used."""
        ws = workspace(ctx, config)
        if environment:
            ws.environment(environment)
        items = ws.store.approvals(environment)
        if as_json:
            print_json({"approvals": items})
            return
        table = Table("id", "environment", "release", "requested by", "approved by", "expires", "used by",
                      box=None, pad_edge=False)
        for a in items:
            table.add_row(str(a["id"]), a["environment"], a["release"], a["requested_by"], a["approved_by"] or "-",
                          a["expires_at"], f"#{a['used_by']}" if a["used_by"] else "-")
        stdout().print(table)
