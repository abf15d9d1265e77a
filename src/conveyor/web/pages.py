"""What each page shows, read from the state store (through the operations where the CLI has one)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.operations.consistency import consistency
from conveyor.operations.dora import duration, report
from conveyor.operations.flagging import matrix
from conveyor.operations.status import deployment_detail
from conveyor.operations.windows import week_ahead, window_states
from conveyor.operations.workspace import Workspace
from conveyor.web.charts import dora_charts

STATUSES = ("running", "succeeded", "failed", "rolled_back", "interrupted", "blocked")


def fleet(ws: Workspace) -> list[dict[str, Any]]:
    """environment → region → role: the release its hosts run (or `mixed`), its commit, since when, by whom.

    Read from what deployments recorded (as `status` without `--verify`): the dashboard never opens a host."""
    out = []
    users: dict[int, str | None] = {}
    for env in ws.config.environments:
        hosts = ws.store.host_states(env)
        pointers = ws.store.pointers(env)
        manifests = ws.store.release_manifests([h["release"] for h in hosts if h["release"]])
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for host in hosts:
            groups.setdefault((host["region"], host["role"]), []).append(host)
        rows = []
        for (region, role), members in sorted(groups.items()):
            releases = Counter(h["release"] for h in members)
            release = next(iter(releases)) if len(releases) == 1 else None
            pointer = pointers.get(region) or {}
            deployed_by = None
            if release is not None and pointer.get("release") == release and pointer.get("deployment_id"):
                key = int(pointer["deployment_id"])
                if key not in users:
                    record = ws.store.deployment(key)
                    users[key] = record["user"] if record else None
                deployed_by = users[key]
            git = (manifests.get(release or "") or {}).get("git") or {}
            rows.append({
                "region": region, "role": role, "hosts": len(members), "release": release,
                "releases": sorted((r or "(none)", n) for r, n in releases.items()),
                "commit": str(git.get("sha") or "")[:10] or None,
                "since": pointer.get("updated_at") if deployed_by else max(h["updated_at"] for h in members),
                "by": deployed_by,
            })
        out.append({"name": env, "rows": rows})
    return out


def stack(ws: Workspace) -> dict[str, Any] | None:
    """The consistency matrix (component × environment/region/role, as `conveyor consistency` shows it from what
    hosts last said) and its drift; None without `consistency:`; {"problem"} when it cannot be read."""
    if ws.config.consistency is None:
        return None
    try:
        document = consistency(ws)
    except ConveyorError as exc:
        return {"problem": str(exc)}
    columns = sorted({(r["environment"], r["region"], r["role"]) for r in document["matrix"]},
                     key=lambda c: (document["environments"].index(c[0]), c[1], c[2]))
    cells = {(r["component"], r["environment"], r["region"], r["role"]): r for r in document["matrix"]}
    return {"components": document["components"], "columns": columns, "cells": cells, "drift": document["drift"],
            "consistent": document["consistent"], "problem": None}


def flags(ws: Workspace) -> dict[str, Any] | None:
    """Every flag as each environment's regions see it (as `conveyor flags`); None without `flags:`;
    {"problem"} when the flag file cannot be read."""
    if ws.config.flags is None:
        return None
    try:
        document = matrix(ws)
    except ConveyorError as exc:
        return {"problem": str(exc)}
    columns = [(env, region) for env, view in document["environments"].items() for region in view["regions"]]
    return {"flags": document["flags"], "columns": columns, "environments": document["environments"],
            "problem": None}


def regions(ws: Workspace) -> list[str]:
    """Every region of every environment, sorted, once."""
    return sorted({region for env in ws.config.environments.values() for region in env.regions})


def history(ws: Workspace, *, environment: str | None, status: str | None, user: str | None,
            region: str | None = None, since: date | None = None, until: date | None = None,
            limit: int = 200) -> list[dict[str, Any]]:
    """Deployments, newest first, filtered as the page asks (an unknown environment or status finds none);
    `since` and `until` are days (UTC), both included."""
    if environment and environment not in ws.config.environments:
        return []
    if status and status not in STATUSES:
        return []
    return ws.store.history(environment or None, limit, status=status or None, user=user or None,
                            region=region or None, since=since.isoformat() if since else None,
                            before=(until + timedelta(days=1)).isoformat() if until else None)


def deployment(ws: Workspace, deployment_id: int) -> dict[str, Any] | None:
    """One deployment with every host's outcome and every measurement, as `history --id` shows it."""
    return deployment_detail(ws, deployment_id)


def windows(ws: Workspace, moment: datetime) -> list[dict[str, Any]]:
    """Each environment's deploy window at `moment` (as `conveyor windows`), when it next changes and how long
    until then, and its week ahead as a calendar (none for an environment without a window: always open)."""
    out = []
    for state in window_states(ws, list(ws.config.environments), moment):
        change = state["next_close"] if state["open"] else state["next_open"]
        name = state["window"]
        until = (datetime.fromisoformat(change) - moment).total_seconds() if change else None
        out.append({**state, "change": change, "change_in": duration(until),
                    "calendar": week_ahead(name, ws.config.windows[name], moment) if name else None})
    return out


def dora(ws: Workspace, weeks: int) -> dict[str, Any]:
    """The DORA report and, per environment, its four charts."""
    document = report(ws, weeks=weeks)
    charts = {env: dora_charts(entry["weeks"], duration) for env, entry in document["environments"].items()}
    return {"report": document, "charts": charts}
