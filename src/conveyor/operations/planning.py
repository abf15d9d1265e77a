"""plan: what a deploy (or rollback) with the same flags would do, and what would stop it. Changes no host.

The release a plan shows is the one the deploy would ship: without `--release` a deploy builds, so the plan
builds too (into the artifact store only; a build is content-addressed, so the deploy that follows finds the
same release rather than making another). Whatever would stop the deploy before a host changes (a missing
artifact, a closed gate, a migration refused) stops the plan with the same exit code, after the plan is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.artifact import Release
from conveyor.engine.plan import Plan
from conveyor.errors import ConveyorError
from conveyor.gates.registry import judge
from conveyor.operations.deploy import Request, estimate_seconds, gate_context, plan_for, resolve_release
from conveyor.operations.release import record_release
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.operations.migrations import RegionMigrations

STEPS = {
    "deploy": ["probe: make the layout, read current and the journal",
               "receive + verify sha256 + unpack into releases/<id> + link shared (skipped if present)",
               "switch current atomically (rename), journal, restart",
               "checks", "prune to keep_releases (never current or previous)"],
    "rollback": ["probe: read current, the releases on disk and the journal",
                 "switch current back atomically, journal, restart", "checks"],
}


@dataclass
class Preview:
    """A plan as a document, and the error the deploy would stop on (None: it would go ahead)."""

    document: dict[str, Any]
    problem: ConveyorError | None


def preview(ws: Workspace, request: Request, kind: str,
            build: Callable[[], tuple[Release, bool]] | None = None) -> Preview:
    """Plan a deploy or rollback exactly as `deploy`/`rollback` with the same request would run it."""
    plan = plan_for(ws, request)
    release: Release | None = None
    built: bool | None = None
    if kind == "deploy":
        if request.release is None and build is not None:
            release, built = build()
        else:
            release = resolve_release(ws, request.release)
        record_release(ws, release)
    elif request.release:
        release = resolve_release(ws, request.release)
    release_id = release.id if release is not None else None
    regions = [r.region for r in plan.regions]
    schema = None
    if kind == "deploy" and release is not None and ws.config.migrations is not None:
        from conveyor.operations.migrations import plan_migrations

        schema = plan_migrations(ws, plan.environment, regions, release)
    facts = None
    if schema is not None and ws.config.flags is not None:
        from conveyor.operations.flagging import flag_facts

        facts = flag_facts(ws)
    judged = judge(gate_context(ws, request, kind, release_id, explicit=kind == "deploy" or bool(request.release),
                                regions=regions, migrations=schema, flags=facts))
    document = plan_document(ws, plan, release, kind, judged.listed(), built=built, migrations=schema)
    problem = judged.problem
    if problem is not None:
        document["holds"] = {"message": problem.message, "exit_code": problem.exit_code}
    return Preview(document, problem)


def candidate(release: Release | str | None, built: bool | None) -> dict[str, Any] | None:
    """What is known of the release a plan would ship: where it came from and whether its tree was clean."""
    if release is None:
        return None
    if isinstance(release, str):
        return {"id": release}
    git = release.git or {}
    return {
        "id": release.id,
        # "now": this plan's build made it; "earlier": the build found the same content already built;
        # null: named with --release.
        "built": None if built is None else ("now" if built else "earlier"),
        "commit": git.get("sha"), "branch": git.get("branch"), "subject": git.get("subject"),
        "dirty": release.dirty, "diff_sha256": release.diff_sha256,
        "created_at": release.created_at, "user": release.user,
    }


def plan_document(ws: Workspace, plan: Plan, release: Release | str | None, kind: str,
                  gate_list: list[dict[str, Any]], *, built: bool | None = None,
                  migrations: Mapping[str, RegionMigrations] | None = None) -> dict[str, Any]:
    """A plan as JSON: waves, regions, roles, batches and hosts, gates, each host's steps, the estimate.
    `migrations`: the release's migrations as already planned (planned here otherwise)."""
    from conveyor.operations.changes import plan_commits

    environment = ws.config.environments[plan.environment]
    total, per_host = estimate_seconds(ws, plan, kind)
    release_id = release.id if isinstance(release, Release) else release
    document: dict[str, Any] = {
        "environment": plan.environment, "kind": kind, "release": release_id,
        "candidate": candidate(release, built),
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
        "gates": gate_list,
        "steps": STEPS[kind],
        "bake": environment.bake,
        "on_failure": environment.on_failure,
        "checks": [c.describe() for c in environment.checks],
        # per_host_step is null until this environment has history to measure a host step from.
        "estimate": {"seconds": round(total, 1), "per_host_step": None if per_host is None else round(per_host, 2)},
        # region → {"running", "release", "commits": [{"sha", "author", "email", "subject"}], "note"}
        "commits": plan_commits(ws, plan.environment, [r.region for r in plan.regions],
                                release_id if kind == "deploy" else None),
    }
    if ws.config.flags is not None and kind == "deploy":
        from conveyor.operations.flagging import pending

        # region → [{"flag", "from", "to"}]: what the deploy's switch writes to the region's flags file
        document["flags"] = pending(ws, plan.environment, [r.region for r in plan.regions])
    if ws.config.migrations is not None and kind == "deploy" and isinstance(release, Release):
        from conveyor.operations.migrations import plan_migrations

        plans = migrations if migrations is not None else plan_migrations(
            ws, plan.environment, [r.region for r in plan.regions], release)
        document["migrations"] = {region: p.to_json() for region, p in plans.items()}
    if isinstance(release, Release):
        document["compression"] = compression_plan(ws, plan, release)
    return document


def compression_plan(ws: Workspace, plan: Plan, release: Release) -> dict[str, Any]:
    """How the release travels: its stored compression, and the hosts of the plan that lack zstd (as their
    last probe said): under `auto` they are sent a gzip copy, otherwise a zstd release fails there."""
    lacking = set(ws.store.hosts_without_zstd(plan.environment)) if release.compression == "zstd" else set()
    hosts = sorted(h.name for h in plan.hosts if h.name in lacking)
    return {"stored": release.compression, "setting": ws.config.artifact.compression,
            "without_zstd": hosts, "fallback": "gzip" if ws.config.artifact.compression == "auto" else None}
