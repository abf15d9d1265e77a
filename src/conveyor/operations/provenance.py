"""One release's story for the dashboard's release page: how it was built, the commits it brought, the schema
migrations it carried with their verdicts, and where it ran and runs.

Read from what builds and deployments recorded in the state store (the manifest, deployments, the migrations
table, hosts' last known release) and, for the commits, from the git work tree around `conveyor.yml` as
`plan` and `diff` read it (`operations.changes.comparer_for`): never from a host.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from conveyor.operations.changes import comparer_for
from conveyor.operations.workspace import Workspace


def release_story(ws: Workspace, release: str) -> dict[str, Any] | None:
    """What the store and git say of `release`; None when the store never saw it built or deployed."""
    manifest = ws.store.release_manifest(release)
    deployments = ws.store.deployments_of(release)
    if manifest is None and not deployments:
        return None
    git = (manifest or {}).get("git") if isinstance((manifest or {}).get("git"), dict) else None
    created = (manifest or {}).get("created_at")
    before = ws.store.release_before(release, created) if isinstance(created, str) else None
    commits: list[dict[str, str]] = []
    note = None
    if manifest is not None:
        changes = comparer_for(ws).compare(release, before)
        commits, note = [c.to_json() for c in changes.commits], changes.note
    return {
        "id": release,
        "manifest": manifest,
        "git": git,
        "before": before,
        "commits": commits,
        "commits_note": note,
        "migrations": ws.store.release_migrations(release),
        "deployments": deployments,
        "environments": _where(ws, release, deployments),
    }


def _where(ws: Workspace, release: str, deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per environment: when the release first and last arrived (succeeded), in which regions, by whom, and
    the hosts that run it now (by region and role), as last recorded."""
    names = [*ws.config.environments, *sorted({d["environment"] for d in deployments} - set(ws.config.environments))]
    out = []
    for env in names:
        arrived = [d for d in deployments if d["environment"] == env and d["status"] == "succeeded"]
        hosts = Counter((h["region"], h["role"]) for h in ws.store.host_states(env) if h["release"] == release)
        if not arrived and not hosts:
            continue
        out.append({
            "environment": env,
            "first": min((d["finished_at"] or d["started_at"] for d in arrived), default=None),
            "last": max((d["finished_at"] or d["started_at"] for d in arrived), default=None),
            "regions": sorted({r for d in arrived for r in d["regions"]}),
            "by": sorted({d["user"] for d in arrived}),
            "running": [{"region": region, "role": role, "hosts": count}
                        for (region, role), count in sorted(hosts.items())],
        })
    return out
