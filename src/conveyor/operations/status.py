"""status and history: what runs where (as recorded, or as the hosts say), and what happened."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial
from typing import Any

from conveyor.engine.limits import Limits
from conveyor.engine.probe import Probe
from conveyor.engine.rollout import survey
from conveyor.inventory import Host
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
        seen: dict[str, Probe | str] = {}
        if verify:
            all_hosts = [h for region in hosts.values() for h in region]
            limits = ws.limits(env)
            seen = asyncio.run(survey(ws.transport(env), all_hosts, ws.config.target_dir,
                                      limits_for=partial(_region_limits, limits),
                                      concurrency=ws.concurrency(env)))
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
            regions[region] = entry
        out["environments"][env] = {"regions": regions, "verified": verify}
    return out


def _region_limits(limits: dict[str, Limits], host: Host) -> Limits:
    return limits[host.region]


def history(ws: Workspace, environment: str | None = None, limit: int = 20) -> dict[str, Any]:
    """Deployments, newest first, in the shape of `history --json`."""
    if environment:
        ws.environment(environment)
    ws.store.reap()
    return {"deployments": ws.store.history(environment, limit)}


def deployment_detail(ws: Workspace, deployment_id: int) -> dict[str, Any] | None:
    """One deployment with every host's outcome."""
    ws.store.reap()
    record = ws.store.deployment(deployment_id)
    if record is None:
        return None
    return {**record, "hosts": ws.store.host_results(deployment_id),
            "measurements": ws.store.measurements(deployment_id)}
