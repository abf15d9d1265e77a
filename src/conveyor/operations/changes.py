"""What is going out: per region, the release that would arrive, the one that runs, and the commits between.

The release each side runs comes from the state store (the region's pointer, else what its recorded hosts
run); the commit each release was built from comes from its manifest, and the commits from the git
repository around `conveyor.yml` (conveyor.vcs.changes); with `migrations:` configured, the schema
migrations still to run come from the arriving release. `diff` shows these documents, `plan` the commits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConveyorError, UsageError
from conveyor.operations.workspace import Workspace
from conveyor.vcs.changes import Comparer, release_commits


@dataclass(frozen=True)
class Running:
    """What one region runs as far as the state store knows, and a note when its hosts disagree."""

    release: str | None
    note: str | None = None


def running(ws: Workspace, env: str) -> dict[str, Running]:
    """region → what it runs: its pointer (the last release it moved to completely), else what its hosts
    were last recorded running; a note when recorded hosts run something else."""
    pointers = ws.store.pointers(env)
    recorded = ws.store.host_releases(env)
    out: dict[str, Running] = {}
    for name, region in ws.config.environments[env].regions.items():
        hosts = [spec.name for specs in region.hosts.values() for spec in specs]
        seen = Counter(recorded[h] for h in hosts if recorded.get(h))
        pointer = pointers.get(name, {}).get("release")
        release = pointer or (seen.most_common(1)[0][0] if seen else None)
        others = {r: n for r, n in seen.items() if r != release}
        note = None
        if others:
            note = "some hosts run another release: " + ", ".join(f"{r} ({n})" for r, n in sorted(others.items()))
        out[name] = Running(release, note)
    return out


def comparer_for(ws: Workspace) -> Comparer:
    """A Comparer over the workspace's git work tree and stores."""
    return Comparer(ws.directory, lambda ids: release_commits(ws.store, ws.artifacts, ws.config.app, ids))


def _joined(*notes: str | None) -> str | None:
    text = "; ".join(n for n in notes if n)
    return text or None


def _regions(ws: Workspace, env: str, only: list[str] | None) -> list[str]:
    known = list(ws.config.environments[env].regions)
    for region in only or []:
        if region not in known:
            raise UsageError(f"unknown region {region!r} in {env}; known: {', '.join(known)}")
    return [r for r in known if not only or r in only]


def diff_environments(ws: Workspace, source_env: str, target_env: str,
                      regions: list[str] | None = None) -> dict[str, Any]:
    """What promoting `source_env` into `target_env` would ship, per region of `target_env`.

    A region is compared with the region of the same name in `source_env`; when `source_env` has no such
    region (a one-region staging before a four-region production), with the release all of its regions run.
    """
    ws.environment(source_env)
    ws.environment(target_env)
    if source_env == target_env:
        raise UsageError("diff compares two different environments (or one environment with --release)")
    wanted = _regions(ws, target_env, regions)
    sources = running(ws, source_env)
    targets = running(ws, target_env)
    distinct = sorted({r.release for r in sources.values() if r.release})
    comparer = comparer_for(ws)
    comparer.prepare([r.release for r in [*sources.values(), *targets.values()]])
    out: dict[str, Any] = {}
    for region in wanted:
        target = targets[region]
        match_note = None
        if region in sources:
            source: Running = sources[region]
            if source.release is None:
                match_note = f"{source_env}/{region} has no release recorded"
        elif len(distinct) == 1:
            source = Running(distinct[0])
            match_note = f"{source_env} has no region {region}: compared with what all its regions run"
        else:
            source = Running(None)
            what = ", ".join(f"{name}: {r.release}" for name, r in sources.items() if r.release)
            match_note = (f"{source_env} has no region {region} and its regions run different releases ({what})"
                          if what else f"{source_env} has no release recorded")
        changes = comparer.compare(source.release, target.release)
        out[region] = {
            "from": source.release, "to": target.release,
            "commits": [c.to_json() for c in changes.commits],
            "note": _joined(match_note, source.note, target.note, changes.note),
        }
    add_migrations(ws, target_env, out)
    return {"from": source_env, "to": target_env, "regions": out}


def add_migrations(ws: Workspace, env: str, out: dict[str, Any]) -> None:
    """With `migrations:` configured, each region's entry gets "migrations": the ones the release it would
    receive has not applied there yet ({"contract", "expand", "waiting"}, as `plan --json` shows them), or
    null and a note when they cannot be read."""
    if ws.config.migrations is None:
        return
    from conveyor.operations.migrations import plan_migrations

    by_release: dict[str | None, list[str]] = {}
    for region, entry in out.items():
        by_release.setdefault(entry["from"], []).append(region)
    for release, regions in by_release.items():
        for region in regions:
            out[region]["migrations"] = None
        if release is None:
            continue
        try:
            plans = plan_migrations(ws, env, regions, ws.artifacts.get(release))
        except ConveyorError as exc:
            for region in regions:
                out[region]["note"] = _joined(out[region]["note"], f"migrations: {exc.message}")
            continue
        for region in regions:
            plan = plans.get(region)
            out[region]["migrations"] = plan.to_json() if plan is not None else None


def candidate(ws: Workspace, release: str | None) -> str:
    """The release id to compare with: the one named (it must be known), or the newest built."""
    if release in (None, "latest"):
        built = ws.artifacts.list()
        if not built:
            raise UsageError("no release has been built yet; run `conveyor build`, or name one with --release")
        return built[0].id
    assert release is not None
    if release not in ws.artifacts and release not in release_commits(ws.store, ws.artifacts, ws.config.app, [release]):
        raise UsageError(f"{release}: unknown release ID; `conveyor releases` lists them")
    return release


def diff_release(ws: Workspace, env: str, release: str | None, regions: list[str] | None = None) -> dict[str, Any]:
    """What deploying `release` (default: the newest built) to `env` would ship, per region."""
    ws.environment(env)
    wanted = _regions(ws, env, regions)
    chosen = candidate(ws, release)
    targets = running(ws, env)
    comparer = comparer_for(ws)
    comparer.prepare([chosen, *(r.release for r in targets.values())])
    out: dict[str, Any] = {}
    for region in wanted:
        target = targets[region]
        changes = comparer.compare(chosen, target.release)
        out[region] = {"from": chosen, "to": target.release, "commits": [c.to_json() for c in changes.commits],
                       "note": _joined(target.note, changes.note)}
    add_migrations(ws, env, out)
    return {"from": chosen, "to": env, "regions": out}


def plan_commits(ws: Workspace, env: str, regions: list[str], release: str | None) -> dict[str, Any]:
    """For `plan`: region → {"running", "release", "commits", "note"}; never fails (a note says why)."""
    if release is None:
        return {}
    try:
        targets = running(ws, env)
        comparer = comparer_for(ws)
        comparer.prepare([release, *(targets[r].release for r in regions if r in targets)])
    except ConveyorError as exc:  # the plan still shows hosts and gates
        return {r: {"running": None, "release": release, "commits": [], "note": exc.message} for r in regions}
    out: dict[str, Any] = {}
    for region in regions:
        target = targets.get(region, Running(None))
        changes = comparer.compare(release, target.release)
        out[region] = {"running": target.release, "release": release,
                       "commits": [c.to_json() for c in changes.commits], "note": _joined(target.note, changes.note)}
    return out
