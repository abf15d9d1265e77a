"""plan, deploy and rollback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.options import (
    ConfigOption,
    JsonOption,
    interactive,
    print_json,
    results_table,
    stderr,
    stdout,
    styled,
    workspace,
)
from conveyor.errors import ConveyorError, UsageError
from conveyor.operations.workspace import Workspace
from conveyor.values import format_duration

if TYPE_CHECKING:
    from conveyor.engine.plan import Plan
    from conveyor.engine.results import DeploymentResult
    from conveyor.operations.request import Request

RegionOption = typer.Option([], "--region", "-r", help="Only this region (repeatable).")
RoleOption = typer.Option([], "--role", help="Only this role (repeatable).")
YesOption = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")
ReasonOption = typer.Option(None, "--reason", help="Why: recorded in history and the lock.")
BreakGlassOption = typer.Option(False, "--break-glass", help="Deploy through a closed window (needs --reason; "
                                "audited and announced).")
SkipPromotionOption = typer.Option(False, "--skip-promotion", help="Deploy a release that has not succeeded "
                                   "upstream (needs --reason; audited).")
AcceptDriftOption = typer.Option(False, "--accept-drift", help="Deploy onto hosts whose stack differs from "
                                 "where the release was tested or built (needs --reason; audited).")
AutoOption = typer.Option(False, "--auto", help="An automatic (pipeline) deploy: only where the environment has "
                          "auto: true.")
ApprovalOption = typer.Option(None, "--request", help="Deploy an approved request.", metavar="ID")

def render_plan(document: dict[str, Any]) -> None:
    """Show a plan as a person reads it: everything `plan --json` says, in words."""
    out = stdout()

    def say(text: str) -> None:
        out.print(text, markup=False, emoji=False)  # data is never markup

    what = document["release"] or ("each region's previous release (read from its hosts)"
                                   if document["kind"] == "rollback" else "(no release)")
    out.print(styled("[bold]{} {} to {}[/bold]: {} host(s)", document["kind"], what, document["environment"],
                     str(document["hosts"])))
    built = document.get("candidate") or {}
    if built.get("built"):
        made = "built now" if built["built"] == "now" else "already built with the same content"
        commit = f" from commit {built['commit'][:12]}" if built.get("commit") else " (not from git)"
        say(f"release {built['id']}: {made}{commit}")
    if built.get("dirty"):
        say(f"warning: built from a work tree with uncommitted changes (diff {str(built['diff_sha256'])[:12]}): "
            "the commit does not say what ships")
    table = results_table("wave", "region", "role", "batch", "hosts")
    for number, wave in enumerate(document["waves"], start=1):
        for region in wave:
            for role in region["roles"]:
                for batch in role["batches"]:
                    label = "canary" if batch["canary"] else str(batch["number"])
                    table.add_row(str(number), region["region"], role["role"], label, ", ".join(batch["hosts"]))
    out.print(table)
    if document.get("skipped_regions"):
        say(f"regions with no hosts to move: {', '.join(document['skipped_regions'])}")
    roles: dict[str, dict[str, Any]] = {}
    for wave in document["waves"]:
        for region in wave:
            for role in region["roles"]:
                roles.setdefault(role["role"], role)
    for name, role in roles.items():
        parts = [f"restart: {role['restart']}" if role.get("restart") else "no restart command",
                 f"max failures: {role['max_failures']}"]
        if role.get("canary_bake"):
            parts.append(f"canary bake: {format_duration(role['canary_bake'])}")
        if role.get("checks"):
            parts.append(f"checks: {'; '.join(role['checks'])}")
        say(f"role {name}: " + ", ".join(parts))
    for gate in document["gates"]:
        state = "open" if gate["open"] else ("closed, overridden by --" + gate["overridden"].replace("_", "-")
                                             if gate.get("overridden") else "closed")
        out.print(styled(f"gate {{}}: [{'green' if gate['open'] else 'red'}]{{}}[/] — {{}}", gate["gate"], state,
                         gate["detail"]))
    if document.get("bake"):
        say(f"bake between waves: {format_duration(document['bake'])}, watching: "
            f"{'; '.join(document['checks']) or 'nothing (a pause)'}; on failure: {document['on_failure']}")
    else:
        say(f"no bake between waves; on failure: {document['on_failure']}"
            + (f"; watching: {'; '.join(document['checks'])}" if document["checks"] else ""))
    for region, migrations in (document.get("migrations") or {}).items():
        for phase in ("contract", "expand", "waiting"):
            for item in migrations[phase]:
                when = "waits until every region runs it" if phase == "waiting" else f"runs before {region} switches"
                say(f"migration {region} {item['name']} ({item['phase']}, {item['class']}): {when}")
    for region, changes in (document.get("flags") or {}).items():
        for change in changes:
            say(f"flag {region} {change['flag']}: {change['from'] or '(new)'} → {change['to'] or '(removed)'}")
    travel = document.get("compression") or {}
    if travel.get("without_zstd"):
        lacking = ", ".join(travel["without_zstd"])
        say(f"hosts without zstd, sent a gzip copy: {lacking}" if travel.get("fallback") else
            f"warning: hosts without zstd cannot unpack this zstd release: {lacking} "
            "(install zstd there, or set artifact.compression: auto)")
    say("each host: " + " → ".join(document["steps"]))
    estimate = document["estimate"]
    if estimate["per_host_step"] is None:
        bakes = f"; its bakes alone take ~{format_duration(estimate['seconds'])}" if estimate["seconds"] else ""
        say(f"estimated duration: no history yet for {document['environment']}{bakes}")
    else:
        say(f"estimated duration: ~{format_duration(estimate['seconds'])} "
            f"(a host step takes ~{estimate['per_host_step']:g}s, from recent history)")
    _render_commits(document)
    if document.get("holds"):
        say(f"a deploy would stop here: {document['holds']['message']}")


def _render_commits(document: dict[str, Any]) -> None:
    if not document.get("commits"):
        return
    from conveyor.cli.inspecting import render_commits

    out = stdout()
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


def _moment(at: str | None) -> datetime | None:
    """`--at TIME` read as windows --at reads it (no offset: this machine's time zone)."""
    if at is None:
        return None
    from conveyor.gates.windows import parse_at

    try:
        return parse_at(at, datetime.now().astimezone().tzinfo or UTC)
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None


def _warm(ws: Workspace, request: Request) -> None:
    """Open the TCP connections to the hosts the request moves first while the command goes on starting
    (Workspace.warm). Whatever goes wrong here is the command's to say later, in its own words."""
    from conveyor.operations.request import plan_for

    with contextlib.suppress(ConveyorError):
        ws.warm(request.environment, plan_for(ws, request))


def _confirmation(yes: bool, as_json: bool) -> bool:
    """Whether to ask before changing hosts. Without a terminal nobody can answer, and going ahead
    unasked is how a stray script deploys production: refuse unless --yes says it was meant."""
    if yes:
        return False
    if not interactive():
        raise UsageError("this command changes hosts and there is no terminal to confirm on: "
                         "pass --yes to run without a terminal")
    return not as_json


def _confirm(ws: Workspace, kind: str) -> Any:
    from conveyor.artifact import is_release_id
    from conveyor.operations.deploy import gates
    from conveyor.operations.planning import plan_document

    def ask(plan: Plan, release: str) -> bool:
        known = ws.artifacts.get(release) if is_release_id(release) and release in ws.artifacts else None
        regions = [r.region for r in plan.regions]
        render_plan(plan_document(ws, plan, known or (release if is_release_id(release) else None), kind,
                                  gates(ws, plan.environment, release if is_release_id(release) else None, kind,
                                        regions=regions)))
        return typer.confirm(f"{kind} {release} to {len(plan.hosts)} host(s) of {plan.environment}?",
                             default=False, err=True)
    return ask


def _shown_once(run: Callable[[], DeploymentResult], as_json: bool) -> DeploymentResult:
    """Run a deployment; when it ends in an error that carries its result (interrupted, stopped, failed to
    record), the display has already printed the verdict with that message: exit with its code, quietly."""
    try:
        return run()
    except ConveyorError as exc:
        if as_json or getattr(exc, "result", None) is None:
            raise
        raise typer.Exit(exc.exit_code) from None


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
        release: str | None = typer.Option(None, "--release", help="Release id, or `latest` (default: build "
                                           "now, as deploy does; only the artifact store is written)."),
        rollback: bool = typer.Option(False, "--rollback", help="Plan a rollback instead of a deploy "
                                      "(--release then names the --to release)."),
        reason: str | None = ReasonOption,
        break_glass: bool = BreakGlassOption,
        skip_promotion: bool = SkipPromotionOption,
        accept_drift: bool = AcceptDriftOption,
        auto: bool = AutoOption,
        approval: int | None = ApprovalOption,
        at: str | None = typer.Option(None, "--at", help="Judge the windows at this time (ISO 8601) instead "
                                      "of now: what a deploy then would meet."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Show what `deploy` with the same options would do: the release (built now if deploy would build
        it), hosts, waves, batches, gates and steps. Exits as deploy would before any host changes (2 bad
        input, 3 held). Changes no host."""
        from conveyor.gates.windows import evaluated_at
        from conveyor.operations.deploy import Request
        from conveyor.operations.planning import preview
        from conveyor.operations.release import build

        ws = workspace(ctx, config)
        ws.environment(environment)
        request = Request(environment, regions=region, roles=role, release=release, reason=reason,
                          break_glass=break_glass, skip_promotion=skip_promotion, auto=auto, approval=approval,
                          accept_drift=accept_drift)
        moment = _moment(at)
        try:
            with evaluated_at(moment) if moment else contextlib.nullcontext():
                result = preview(ws, request, "rollback" if rollback else "deploy", build=lambda: build(ws))
        finally:
            ws.close()
        if as_json:
            print_json(result.document)
        else:
            render_plan(result.document)
        if result.problem is not None:
            if as_json:
                raise typer.Exit(result.problem.exit_code)
            raise result.problem

    @app.command()
    def deploy(
        ctx: typer.Context,
        environment: str = typer.Argument(..., help="The environment to deploy to."),
        region: list[str] = RegionOption,
        role: list[str] = RoleOption,
        release: str | None = typer.Option(None, "--release", help="Release id, or `latest` (default: build now)."),
        reason: str | None = ReasonOption,
        resume: int | None = typer.Option(None, "--resume", help="Carry on a held deployment (accepts its "
                                          "inconclusive check).", metavar="ID"),
        break_glass: bool = BreakGlassOption,
        skip_promotion: bool = SkipPromotionOption,
        accept_drift: bool = AcceptDriftOption,
        auto: bool = AutoOption,
        approval: int | None = ApprovalOption,
        yes: bool = YesOption,
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Deploy a release to an environment, wave by wave, region by region, batch by batch."""
        from conveyor.operations.deploy import Request, for_approval, resume_request
        from conveyor.operations.deploy import deploy as run_deploy
        from conveyor.operations.release import build

        ask = _confirmation(yes, as_json)
        ws = workspace(ctx, config)
        ws.environment(environment)
        subscribers = [] if as_json else _display()
        confirm = _confirm(ws, "deploy") if ask else None
        if resume is not None:
            if release or region:
                raise UsageError("--resume carries on a deployment as it was: no --release or --region with it")
            request = resume_request(ws, environment, resume, reason)
            request.roles = role
        else:
            request = Request(environment, regions=region, roles=role, release=release, reason=reason)
        if approval is not None:
            request = for_approval(ws, request, approval)
        request.break_glass, request.skip_promotion, request.auto = break_glass, skip_promotion, auto
        request.accept_drift = accept_drift
        request.approval = approval
        try:
            result = _shown_once(lambda: run_deploy(ws, request, subscribers=subscribers, confirm=confirm,
                                                    build=lambda: build(ws)[0]), as_json)
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
        flags: bool = typer.Option(False, "--flags", help="Revert the last flag change instead (a deployment of "
                                   "kind flags)."),
        yes: bool = YesOption,
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Switch back to the previous release still on the hosts (no transfer), or to --to RELEASE."""
        from conveyor.operations.request import Request

        ask = _confirmation(yes, as_json)
        ws = workspace(ctx, config)
        ws.environment(environment)
        request = Request(environment, regions=region, roles=role, release=to, reason=reason, force=force)
        if flags and (to or region or force):
            raise UsageError("rollback --flags reverts the last flag change everywhere it went: no --to, --region "
                             "or --force with it")
        if not ask and not flags:
            _warm(ws, request)  # before the state store and the engine load
        from conveyor.operations.deploy import rollback as run_rollback

        subscribers = [] if as_json else _display()
        confirm = _confirm(ws, "rollback") if ask else None
        try:
            if flags:
                from conveyor.operations.flagging import rollback_flags

                result = _shown_once(lambda: rollback_flags(ws, request, subscribers=subscribers, confirm=confirm),
                                     as_json)
            else:
                result = _shown_once(lambda: run_rollback(ws, request, subscribers=subscribers, confirm=confirm),
                                     as_json)
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
    def deny(
        ctx: typer.Context,
        approval_id: int = typer.Argument(..., help="The request to deny.", metavar="ID"),
        reason: str = typer.Option(..., "--reason", help="Why (shown to the requester and kept in the audit "
                                   "trail; at most 500 characters)."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Deny a deploy request made by someone else: a deploy that names it is held, with your reason."""
        from conveyor.operations.gating import deny_as

        ws = workspace(ctx, config)
        record = deny_as(ws.store, ws.user, approval_id, reason)
        if as_json:
            print_json(record)
        else:
            stdout().print(styled("denied #{}: {} to {} (requested by {}): {}", str(approval_id), record["release"],
                                  record["environment"], record["requested_by"], record["denial"]))

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
        table = results_table("id", "environment", "release", "requested by", "approved by", "expires", "used by",
                              "denied")
        for a in items:
            denied = f"by {a['denied_by']}: {a['denial']}" if a.get("denied_by") else "-"
            table.add_row(str(a["id"]), a["environment"], a["release"], a["requested_by"], a["approved_by"] or "-",
                          a["expires_at"], f"#{a['used_by']}" if a["used_by"] else "-", denied)
        stdout().print(table)
