"""rollback: back to each region's previous release still on its hosts (planned from the state store when it
can be, read from the hosts when not), or to a named release."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.artifact import is_release_id
from conveyor.engine.events import (
    Subscriber,
)
from conveyor.engine.plan import Plan
from conveyor.engine.probe import Probe
from conveyor.engine.results import DeploymentResult
from conveyor.engine.rollout import Shipment
from conveyor.errors import (
    ArtifactError,
    HeldError,
    UsageError,
)
from conveyor.operations.deployment import Deployment, Job, single_target
from conveyor.operations.gating import check_gates, record_blocked
from conveyor.operations.request import Confirm, Request, plan_for, resolve_release
from conveyor.operations.shipping import shipment
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    pass


def rollback(ws: Workspace, request: Request, *, subscribers: Sequence[Subscriber],
             confirm: Confirm | None = None) -> DeploymentResult:
    """Switch regions back to their previous release (the one still on the hosts), or to `--to`."""
    ws.environment(request.environment)
    plan = plan_for(ws, request)
    ws.store.reap()
    try:
        # Held before we even read the hosts: a locked environment says so, whatever its hosts hold.
        check_gates(ws, request.environment, request.release, "rollback", explicit=bool(request.release),
                     lock=True, request=request)
    except HeldError as exc:
        record_blocked(ws, request, [r.region for r in plan.regions], request.release, "rollback", exc)
        raise
    targets: dict[str, str | None] = {}
    shipments: dict[str, Shipment] = {}
    if request.release:
        wanted = resolve_release(ws, request.release)
        shipments[wanted.id] = shipment(ws, wanted)
        targets = {r.region: wanted.id for r in plan.regions}
        _check_schema_supports(ws, request, targets)
        return Deployment(ws, request, plan, Job("rollback", wanted.id, targets, shipments),
                          subscribers=subscribers, confirm=confirm).run()
    for stored in ws.artifacts.list()[:20]:
        if stored.path.is_file():  # at hand; a release a remote store lists is fetched once it is chosen
            shipments[stored.id] = shipment(ws, stored)
    predicted = _predict_rollback(ws, plan)
    if predicted is not None:
        # One round trip per host: each is switched on the condition that it is what the store says; a host
        # that is not is read first and moved like any other (see RolloutSpec.expect).
        targets, expect = predicted
        _check_schema_supports(ws, request, targets)
        _fetch_shipments(ws, targets, shipments)
        job = Job("rollback", single_target(targets), targets, shipments, expect=expect)
        return Deployment(ws, request, plan, job, subscribers=subscribers, confirm=confirm).run()

    def resolve(probes: dict[str, Probe]) -> dict[str, str | None]:
        # Called by the rollout once it has read every host over the connections it then reuses.
        if not probes:
            raise UsageError("no host could be read; see each host's error")
        chosen: dict[str, str | None] = {
            region.region: _region_target(region.region, [probes[h.key] for h in region.hosts if h.key in probes])
            for region in plan.regions}
        _check_schema_supports(ws, request, chosen)
        _fetch_shipments(ws, chosen, shipments)
        return chosen

    job = Job("rollback", None, targets, shipments, resolve=resolve)
    return Deployment(ws, request, plan, job, subscribers=subscribers, confirm=confirm).run()

def _check_schema_supports(ws: Workspace, request: Request, targets: dict[str, str | None]) -> None:
    """Refuse a rollback across an applied contract or breaking migration (unless forced, with a reason)."""
    if ws.config.migrations is None:
        return
    from conveyor.operations.migrations import check_rollback

    if request.force and not (request.reason or "").strip():
        raise UsageError("--force needs --reason TEXT: it is audited")
    check_rollback(ws, request.environment, targets, force=request.force, reason=request.reason)

def _fetch_shipments(ws: Workspace, targets: dict[str, str | None], shipments: dict[str, Shipment]) -> None:
    """Make sure the tarball of each target is at hand, for hosts that no longer have it."""
    for target in {t for t in targets.values() if t}:
        if target not in shipments:
            try:
                release = ws.artifacts.get(target)
            except ArtifactError:
                continue  # a host that lacks it fails with "not in the store to send"
            shipments[target] = shipment(ws, release)

def _predict_rollback(ws: Workspace, plan: Plan) -> tuple[dict[str, str | None], dict[str, str]] | None:
    """Each region's rollback target and each host's current release, when the state store knows them all:
    every host of a region recorded on the same release, and what that release replaced there."""
    running = ws.store.host_releases(plan.environment)
    targets: dict[str, str | None] = {}
    expect: dict[str, str] = {}
    for region in plan.regions:
        currents = {running.get(host.name) for host in region.hosts}
        current = currents.pop() if len(currents) == 1 else None
        if current is None or not is_release_id(current):
            return None
        target = ws.store.replaced_by(plan.environment, region.region, current)
        if target is None or not is_release_id(target):
            return None
        targets[region.region] = target
        expect.update({host.key: current for host in region.hosts})
    return (targets, expect) if targets else None

def _region_target(region: str, probes: list[Probe]) -> str:
    candidates = Counter(t for t in (p.rollback_target() for p in probes) if t)
    if not candidates:
        raise UsageError(f"region {region}: no previous release is left on its hosts; use --to RELEASE")
    return candidates.most_common(1)[0][0]
