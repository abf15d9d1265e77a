"""status and history: what runs where (as recorded, or as the hosts say), and what happened."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial
from typing import Any

from conveyor.engine.limits import Limits
from conveyor.engine.probe import Probe
from conveyor.engine.rollout import survey
from conveyor.engine.stack import stack_of
from conveyor.inventory import Host
from conveyor.operations.stack import deployment_stack, record_stack
from conveyor.operations.workspace import Workspace


def status(ws: Workspace, environment: str | None = None, *, verify: bool = False) -> dict[str, Any]:
    """environment → region → release, consistency and hosts; `verify` reads every host."""
    envs = [environment] if environment else list(ws.config.environments)
    out: dict[str, Any] = {"environments": {}}
    ws.store.reap()
    for env in envs:
        hosts = ws.hosts(env)
        recorded = ws.store.host_releases(env)
        pointers = ws.store.pointers(env)
        deployments = ws.store.history(env, 50) if verify else []
        seen: dict[str, Probe | str] = {}
        if verify:
            all_hosts = [h for region in hosts.values() for h in region]
            limits = ws.limits(env)
            asked = stack_of(ws.config.consistency)
            seen = asyncio.run(survey(ws.transport(env), all_hosts, ws.config.target_dir,
                                      limits_for=partial(_region_limits, limits),
                                      concurrency=ws.concurrency(env), stack=asked, app=ws.config.app))
            if asked is not None:
                record_stack(ws, env, all_hosts, seen, asked)
        regions: dict[str, Any] = {}
        for region, members in hosts.items():
            rows = []
            for host in members:
                row: dict[str, Any] = {"name": host.name, "role": host.role}
                if verify:
                    probe = seen.get(host.key)
                    if isinstance(probe, Probe):
                        row["release"] = probe.current
                        ws.store.set_host_release(env, host.name, region, host.role, probe.current)
                        if probe.current != recorded.get(host.name):
                            row["recorded"] = recorded.get(host.name)
                    else:
                        row["release"] = None
                        row["error"] = probe or "not read"
                else:
                    row["release"] = recorded.get(host.name)
                rows.append(row)
            releases = Counter(r["release"] for r in rows)
            consistent = len(releases) == 1 and None not in releases and not any("error" in r for r in rows)
            pointer = pointers.get(region, {}).get("release")
            entry: dict[str, Any] = {
                "release": rows[0]["release"] if consistent else None,
                "consistent": consistent,
                "pointer": pointer,
                "hosts": rows,
            }
            if consistent and pointer and pointer != entry["release"]:
                entry["drift"] = f"hosts run {entry['release']} but the region's pointer says {pointer}"
            if verify:
                last = next((d for d in deployments if region in d["regions"]), None)
                found = repair(env, region, rows, pointer, last)
                if found is not None:
                    entry["drift"], entry["repair"] = found
            regions[region] = entry
        out["environments"][env] = {"regions": regions, "verified": verify}
    return out


def repair(env: str, region: str, rows: list[dict[str, Any]], pointer: str | None,
           last: dict[str, Any] | None) -> tuple[str, str] | None:
    """What differs between what a region's hosts run (read from them) and what the store says, and the
    command that brings them together (None when nothing differs, or a host could not be read).

    A deployment that was interrupted (or held) on the way to a release some hosts run is finished; hosts
    that agree with each other but not with the pointer are recorded (a deploy of what they run moves
    nothing); hosts that disagree are brought to the pointer's release.
    """
    if not rows or any("error" in row for row in rows):
        return None
    by_release: dict[str | None, list[str]] = {}
    for row in rows:
        by_release.setdefault(row["release"], []).append(row["name"])
    if list(by_release) == [pointer]:
        return None
    running = [release for release in by_release if release]
    if len(by_release) == 1:
        what = f"hosts run {running[0] if running else 'nothing'}"
    else:
        what = "hosts run " + " and ".join(f"{release or 'nothing'} ({_names(names)})"
                                           for release, names in by_release.items())
    what += f" but the region's pointer says {pointer}" if pointer else " but the region has no pointer"
    if (last is not None and last["kind"] == "deploy" and last["status"] in {"interrupted", "held"}
            and last["release"] in by_release):
        return (f"{what} (deployment #{last['id']} to {last['release']} is {last['status']})",
                f"conveyor deploy {env} --resume {last['id']}")
    if len(by_release) == 1 and running:
        return what, f"conveyor deploy {env} --region {region} --release {running[0]}"
    most = Counter({release: len(by_release[release]) for release in running}).most_common(1)
    target = pointer or (most[0][0] if most else None)
    if target is None:
        return None  # no host runs anything and nothing is recorded: a region never deployed
    return what, f"conveyor deploy {env} --region {region} --release {target}"


def _names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _region_limits(limits: dict[str, Limits], host: Host) -> Limits:
    return limits[host.region]


def history(ws: Workspace, environment: str | None = None, limit: int = 20) -> dict[str, Any]:
    """Deployments, newest first, in the shape of `history --json`."""
    if environment:
        ws.environment(environment)
    ws.store.reap()
    deployments = ws.store.history(environment, limit)
    built: dict[str, dict[str, Any] | None] = {}
    for deployment in deployments:
        deployment["dirty"] = _built_dirty(ws, deployment.get("release"), built)
    return {"deployments": deployments}


def _built_dirty(ws: Workspace, release: str | None, seen: dict[str, dict[str, Any] | None]) -> bool:
    """Whether a release was built from a work tree with uncommitted changes (as its record says)."""
    if not release:
        return False
    if release not in seen:
        seen[release] = ws.store.release_manifest(release)
    manifest = seen[release] or {}
    return bool(manifest.get("dirty"))


def deployment_detail(ws: Workspace, deployment_id: int) -> dict[str, Any] | None:
    """One deployment with every host's outcome."""
    ws.store.reap()
    record = ws.store.deployment(deployment_id)
    if record is None:
        return None
    manifest = ws.store.release_manifest(record["release"]) if record.get("release") else None
    built = None
    if manifest is not None:
        built = {"commit": (manifest.get("git") or {}).get("sha"), "dirty": bool(manifest.get("dirty")),
                 "diff_sha256": manifest.get("diff_sha256"), "created_at": manifest.get("created_at"),
                 "user": manifest.get("user")}
    return {**record, "built": built, "hosts": ws.store.host_results(deployment_id),
            "measurements": ws.store.measurements(deployment_id), "stack": deployment_stack(ws, record, manifest)}
