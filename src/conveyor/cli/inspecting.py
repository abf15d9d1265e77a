"""status, history, releases, diff and windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from conveyor.cli.options import ConfigOption, JsonOption, print_json, results_table, stdout, styled, workspace
from conveyor.errors import UsageError
from conveyor.gates.drift import names, shown


def render_commits(commits: list[dict[str, str]], indent: str = "  ") -> None:
    """Commits as `sha  author <email>  subject` lines, newest first."""
    out = stdout()
    for commit in commits:
        out.print(f"{indent}{commit['sha'][:10]}  {commit['author']} <{commit['email']}>  {commit['subject']}",
                  markup=False, emoji=False)


def render_diff(document: dict[str, Any]) -> None:
    """Show a diff as a person reads it: per region, the two releases and the commits between them."""
    out = stdout()
    out.print(f"from {document['from']} to {document['to']}", markup=False, emoji=False)
    for region, entry in document["regions"].items():
        count = len(entry["commits"])
        out.print(f"{region}: {entry['to'] or '(nothing)'} → {entry['from'] or '(nothing)'}: "
                  f"{count} commit{'' if count == 1 else 's'}", markup=False, emoji=False)
        render_commits(entry["commits"])
        for phase in ("contract", "expand", "waiting"):
            for item in (entry.get("migrations") or {}).get(phase, []):
                when = " (waits until every region runs it)" if phase == "waiting" else ""
                out.print(f"  migration {item['name']} ({item['phase']}, {item['class']}){when}", markup=False,
                          emoji=False)
        if entry["note"]:
            out.print(f"  note: {entry['note']}", markup=False, emoji=False)


def _audit_lines(detail: dict[str, Any]) -> list[str]:
    """Why the deployment ran, and every override it used with its reason (audited in history)."""
    lines = []
    for override in detail.get("overrides") or []:
        lines.append(f"override: {override.replace('_', '-')} — reason: {detail.get('reason') or '(none given)'}")
    if detail.get("reason") and not detail.get("overrides"):
        lines.append(f"reason: {detail['reason']}")
    if detail.get("approval_id") is not None:
        lines.append(f"approved request: #{detail['approval_id']}")
    return lines


def stack_lines(stack: dict[str, Any] | None) -> list[str]:
    """history --id: what the release was built with, tested on and runs on (consistency)."""
    if not stack:
        return []

    def spread(values: dict[str, list[str]]) -> str:
        return ", ".join(f"{shown(v)} ({names(h)})" for v, h in values.items())

    lines = []
    if stack["built_with"]:
        lines.append("built with: " + "; ".join(f"{c} {shown(v)}" for c, v in stack["built_with"].items()))
    tested = stack.get("tested_on")
    if tested:
        lines.append(f"tested on ({tested['environment']}, deployment #{tested['deployment']}): "
                     + "; ".join(f"{c} {spread(v)}" for c, v in tested["components"].items()))
    if stack["runs_on"]:
        lines.append("runs on: " + "; ".join(f"{c} {spread(v)}" for c, v in stack["runs_on"].items()))
    return lines


def _minute(iso: str | None) -> str:
    """`2026-12-06 08:16` from an ISO 8601 timestamp (UTC in the store): short enough for narrow terminals."""
    return f"{iso[:10]} {iso[11:16]}" if iso and len(iso) >= 16 else (iso or "-")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""

    @app.command()
    def status(
        ctx: typer.Context,
        environment: str | None = typer.Argument(None, help="Only this environment."),
        verify: bool = typer.Option(False, "--verify", help="Read every host instead of the recorded state."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """What runs where: environment x region x role, release, host count, consistency."""
        from conveyor.operations.status import status as read_status

        ws = workspace(ctx, config)
        if environment:
            ws.environment(environment)
        document = read_status(ws, environment, verify=verify)
        if as_json:
            print_json(document)
            return
        out = stdout()
        table = results_table("environment", "region", "role", "hosts", "release", "state")
        for env, env_doc in document["environments"].items():
            for region, doc in env_doc["regions"].items():
                roles: dict[str, list[dict[str, str | None]]] = {}
                for host in doc["hosts"]:
                    roles.setdefault(host["role"], []).append(host)
                for role, hosts in roles.items():
                    releases = sorted({h["release"] or "-" for h in hosts})
                    errors = [h for h in hosts if h.get("error")]
                    state = styled("consistent") if doc["consistent"] else styled("[yellow]mixed[/yellow]")
                    if errors:
                        state = styled("[red]{} unreadable[/red]", str(len(errors)))
                    table.add_row(env, region, role, str(len(hosts)), ", ".join(releases), state)
        out.print(table)
        for env, env_doc in document["environments"].items():
            for region, doc in env_doc["regions"].items():
                if doc.get("drift"):
                    fix = f"; `{doc['repair']}` repairs it" if doc.get("repair") else ""
                    out.print(styled("[yellow]{}/{}: {}{}[/yellow]", env, region, doc["drift"], fix))
        if not any(e["verified"] for e in document["environments"].values()):
            out.print(styled("[dim](as recorded; --verify reads every host)[/dim]"))

    @app.command()
    def history(
        ctx: typer.Context,
        environment: str | None = typer.Argument(None, help="Only this environment."),
        number: int = typer.Option(20, "-n", "--number", min=1, max=10000, help="How many deployments."),
        deployment_id: int | None = typer.Option(None, "--id", help="One deployment with every host's outcome."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Deployments, newest first: who shipped what, where, when, and how it ended."""
        from conveyor.operations.status import deployment_detail
        from conveyor.operations.status import history as read_history

        ws = workspace(ctx, config)
        if deployment_id is not None:
            detail = deployment_detail(ws, deployment_id)
            if detail is None:
                raise UsageError(f"no deployment #{deployment_id}")
            if as_json:
                print_json(detail)
                return
            out = stdout()
            out.print(f"#{detail['id']} {detail['kind']} {detail['release'] or '(no release chosen)'} to "
                      f"{detail['environment']} ({', '.join(detail['regions'])}) by {detail['user']}: "
                      f"{detail['status']}", markup=False)
            if detail["summary"]:
                out.print(detail["summary"], markup=False)
            for line in _audit_lines(detail):
                out.print(line, markup=False)
            built = detail.get("built")
            if built:
                origin = f"commit {built['commit'][:12]}" if built.get("commit") else "no git"
                dirty = (f" with uncommitted changes (diff {str(built['diff_sha256'])[:12]})" if built.get("dirty")
                         else "")
                out.print(f"built from {origin}{dirty} by {built.get('user')} at {built.get('created_at')}",
                          markup=False)
            for line in stack_lines(detail.get("stack")):
                out.print(line, markup=False, emoji=False)
            table = results_table("host", "region", "role", "status", "release", "step", "exit", "detail")
            for host in detail["hosts"]:
                text = "; ".join(part for part in (host.get("error"), host.get("note")) if part)
                table.add_row(host["host"], host["region"], host["role"], host["status"], host["release"] or "-",
                              host["step"] or "", "" if host["exit_code"] is None else str(host["exit_code"]), text)
            out.print(table)
            if detail["measurements"]:
                checks = results_table("phase", "at", "scope", "check", "value", "condition", "verdict", "detail")
                for m in detail["measurements"]:
                    checks.add_row(m["phase"], m["at"][11:19], m["scope"], m["check"], str(m["value"]),
                                   m["condition"] or "", m["verdict"], m["detail"] or "")
                out.print(checks)
            return
        document = read_history(ws, environment, number)
        if as_json:
            print_json(document)
            return
        table = results_table("id", "environment", "regions", "kind", "release", "status", "started", "user", "failed")
        colors = {"succeeded": "green", "failed": "red", "rolled_back": "yellow", "interrupted": "magenta",
                  "blocked": "cyan", "running": "blue", "held": "cyan"}
        for d in document["deployments"]:
            release = (d["release"] + " (dirty)") if d["release"] and d.get("dirty") else (d["release"] or "-")
            table.add_row(str(d["id"]), d["environment"], ",".join(d["regions"]), d["kind"], release,
                          styled(f"[{colors.get(d['status'], 'white')}]{{}}[/]", d["status"])
                          + styled(" [red]({})[/red]" * len(d.get("overrides") or []),
                                   *(o.replace("_", "-") for o in d.get("overrides") or [])),
                          _minute(d["started_at"]), d["user"],
                          ", ".join(d["failed_hosts"]))
        stdout().print(table)

    @app.command()
    def releases(ctx: typer.Context, config: str | None = ConfigOption, as_json: bool = JsonOption) -> None:
        """Built releases, newest first."""
        ws = workspace(ctx, config)
        items = ws.artifacts.list()
        if as_json:
            print_json({"releases": [r.manifest() for r in items]})
            return
        table = results_table("release", "created", "by", "size", "files", "commit")
        for r in items:
            commit = f"{r.git['sha'][:8]} {r.git.get('subject', '')}" if r.git else ""
            table.add_row(r.id, r.created_at, r.user, f"{r.size / 1e6:.1f} MB", str(r.files), commit)
        stdout().print(table)

    @app.command()
    def diff(
        ctx: typer.Context,
        environment: str = typer.Argument(..., help="With one environment: what the candidate release would "
                                          "bring to it. With two: the environment whose releases would go out.",
                                          metavar="ENV_A"),
        other: str | None = typer.Argument(None, help="The environment they would go to (its regions are "
                                           "compared).", metavar="ENV_B"),
        region: list[str] = typer.Option([], "--region", "-r", help="Only this region (repeatable)."),
        release: str | None = typer.Option(None, "--release", help="The candidate (default: the newest built); "
                                           "with one environment only."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """What is going out: the commits ENV_A runs that ENV_B does not (`diff staging production`), or
        the commits a release would bring to each region of ENV (`diff production [--release ID]`)."""
        from conveyor.operations.changes import diff_environments, diff_release

        ws = workspace(ctx, config)
        try:
            if other is not None:
                if release is not None:
                    raise UsageError("--release compares a release with one environment: `conveyor diff ENV "
                                     "--release ID`, or two environments without it")
                document = diff_environments(ws, environment, other, region or None)
            else:
                document = diff_release(ws, environment, release, region or None)
        finally:
            ws.close()
        if as_json:
            print_json(document)
            return
        render_diff(document)

    @app.command()
    def windows(
        ctx: typer.Context,
        environment: str | None = typer.Argument(None, help="Only this environment's window."),
        at: str | None = typer.Option(None, "--at", help="Evaluate at this time (ISO 8601) instead of now."),
        config: str | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Whether each deploy window is open, the rule that decides, and when it next opens or closes."""
        from conveyor.gates.windows import now, parse_at
        from conveyor.operations.windows import window_states

        ws = workspace(ctx, config)
        envs = [environment] if environment else list(ws.config.environments)
        if environment:
            ws.environment(environment)
        try:
            moment = parse_at(at, datetime.now().astimezone().tzinfo or UTC) if at else now()
        except ValueError as exc:
            raise UsageError(f"--at: {exc}") from None
        docs = window_states(ws, envs, moment)
        if as_json:
            print_json(docs[0] if environment else {"windows": docs})
            return
        out = stdout()
        for doc in docs:
            state = "[green]open[/green]" if doc["open"] else "[red]closed[/red]"
            out.print(styled("{} {} " + state + " — {}", f"{doc['environment']}:", str(doc["window"] or "(none)"),
                             str(doc["rule"])))
            for key in ("next_open", "next_close"):
                value = doc.get(key)
                if isinstance(value, str):
                    local = datetime.fromisoformat(value).astimezone()
                    out.print(f"  {key.replace('_', ' ')}: {value} (your time {local.isoformat()})")
