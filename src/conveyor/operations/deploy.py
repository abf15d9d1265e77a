"""deploy: ship a release (built now when none is named) to an environment, wave by wave.

The pieces a deployment is made of live beside it: the request and its plan (request.py), the gates
(gating.py), what the rollout needs from outside the engine (shipping.py), the deployment itself
(deployment.py) and rollback (rollback.py). Their public names are importable from here too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from conveyor.artifact import Release
from conveyor.engine.events import (
    Subscriber,
)
from conveyor.engine.results import DeploymentResult
from conveyor.operations.deployment import LEASE_SECONDS, Deployment, Job
from conveyor.operations.gating import approve, check_gates, gate_context, gates, window_before_wave
from conveyor.operations.release import record_release
from conveyor.operations.request import (
    Confirm,
    Request,
    estimate_seconds,
    for_approval,
    plan_for,
    resolve_release,
    resume_request,
)
from conveyor.operations.rollback import rollback
from conveyor.operations.shipping import shipment
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    pass


def deploy(ws: Workspace, request: Request, *, subscribers: Sequence[Subscriber], confirm: Confirm | None = None,
           build: Callable[[], Release] | None = None) -> DeploymentResult:
    """Deploy a release (built now when none is named) to an environment."""
    ws.environment(request.environment)
    plan = plan_for(ws, request)
    release = build() if request.release is None and build is not None else resolve_release(ws, request.release)
    record_release(ws, release)
    targets: dict[str, str | None] = {r.region: release.id for r in plan.regions}
    shipments = {release.id: shipment(ws, release)}
    schema = None
    if ws.config.migrations is not None:
        from conveyor.operations.migrations import plan_migrations

        schema = (release, plan_migrations(ws, request.environment, list(targets), release))
    job = Job("deploy", release.id, targets, shipments, schema=schema)
    if ws.config.flags is None:
        return Deployment(ws, request, plan, job, subscribers=subscribers, confirm=confirm).run()
    from conveyor.operations.flagging import carried, flag_facts, record_written

    # The deploy carries each region's flags document (a bad flag file stops it here, before any host changes),
    # and a contract migration waits for the flags whose off variant needs it.
    documents, job.carry = carried(ws, request.environment, list(targets)) or ({}, None)
    job.flags = flag_facts(ws) if schema is not None else None
    result = Deployment(ws, request, plan, job, subscribers=subscribers, confirm=confirm).run()
    record_written(ws, result, documents, carried=True)
    return result


__all__ = ["LEASE_SECONDS", "Confirm", "Deployment", "Job", "Request", "approve", "check_gates", "deploy",
           "estimate_seconds", "for_approval", "gate_context", "gates", "plan_for", "resolve_release",
           "resume_request", "rollback", "window_before_wave"]
