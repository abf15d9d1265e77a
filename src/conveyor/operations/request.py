"""What a person asked for, and what it refers to: the request, its release, its plan, its estimate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from conveyor.artifact import Release
from conveyor.engine.plan import Plan, make_plan
from conveyor.errors import (
    UsageError,
)
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    pass


@dataclass
class Request:
    """What a user asked for on the command line."""

    environment: str
    regions: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    release: str | None = None
    reason: str | None = None
    break_glass: bool = False          # deploy through a closed window (audited, needs a reason)
    skip_promotion: bool = False       # deploy what has not succeeded upstream (audited, needs a reason)
    auto: bool = False                 # a pipeline deploying on merge: only where `auto: true`
    approval: int | None = None        # an approved request (`--request ID`)
    force: bool = False                # roll back across an applied contract migration (needs a reason; audited)
    accept_drift: bool = False         # deploy onto hosts whose stack drifts (needs a reason; audited)

    @property
    def overrides(self) -> list[str]:
        """The audited overrides this request asks for."""
        return [name for name, on in (("break_glass", self.break_glass), ("skip_promotion", self.skip_promotion),
                                      ("force", self.force), ("accept_drift", self.accept_drift)) if on]

Confirm = Callable[[Plan, str], bool]

def resolve_release(ws: Workspace, release: str | None) -> Release:
    """The release named (or `latest`), from the artifact store."""
    if release in (None, "latest"):
        releases = ws.artifacts.list()
        if not releases:
            raise UsageError("no release has been built yet; run `conveyor build`")
        return ws.artifacts.get(releases[0].id)  # a remote store lists what it has, `get` fetches it
    return ws.artifacts.get(release)

def resume_request(ws: Workspace, env: str, deployment_id: int, reason: str | None) -> Request:
    """The request that carries on a held (or interrupted) deployment: same release, same regions.

    Hosts that already run the release are left alone, and a wave in which nothing moves is not baked
    again: resuming is how a person accepts an inconclusive check and lets the deployment go on.
    """
    record = ws.store.deployment(deployment_id)
    if record is None:
        raise UsageError(f"no deployment #{deployment_id}")
    if record["environment"] != env:
        raise UsageError(f"deployment #{deployment_id} was to {record['environment']}, not {env}")
    if record["kind"] != "deploy" or record["status"] not in {"held", "interrupted"}:
        raise UsageError(f"deployment #{deployment_id} is {record['status']}; only a held or interrupted deploy "
                         "can be resumed")
    ws.store.add_event("resumed", ws.user, environment=env, deployment_id=deployment_id, reason=reason)
    return Request(env, regions=list(record["regions"]), release=record["release"],
                   reason=reason or f"resume #{deployment_id}")

def estimate_seconds(ws: Workspace, plan: Plan, kind: str = "deploy") -> tuple[float, float | None]:
    """(whole deployment, one host step) in seconds: host time from recent history, plus bakes (a deploy's
    canary bakes and bakes between waves; a rollback does not bake). With no history of this environment
    the host step is None and the total counts the bakes alone: no number is made up."""
    durations = [r.get("duration") or 0.0 for d in ws.store.history(plan.environment, 5)
                 for r in ws.store.host_results(d["id"]) if r.get("status") in {"succeeded", "unchanged"}]
    per_host = sum(durations) / len(durations) if durations else None
    environment = ws.config.environments[plan.environment]
    bakes = kind == "deploy"
    total = 0.0
    for wave in plan.waves:
        total += max(sum(len(role.batches) * (per_host or 0.0)
                         + ((ws.config.roles[role.role].canary_bake or 0.0) if bakes else 0.0)
                         for role in region.roles) for region in wave)
    if bakes:
        total += (environment.bake or 0.0) * (len(plan.waves) - 1)
    return total, per_host

def plan_for(ws: Workspace, request: Request) -> Plan:
    """The plan of a request."""
    env = request.environment
    ws.environment(env)
    known = ws.config.environments[env].regions
    if request.regions and not all(region in known for region in request.regions):
        hosts = {}  # make_plan names the unknown region; no inventory needs asking for that
    else:
        hosts = ws.hosts(env, request.regions or None)  # only the regions asked for query their inventory
    return make_plan(ws.config, env, hosts, regions=request.regions or None, roles=request.roles or None)


def for_approval(ws: Workspace, request: Request, approval_id: int) -> Request:
    """The request `deploy --request ID` makes: the approved release and regions. Bad input (no such request,
    another environment, another release named) is a UsageError; whether the approval still holds (used,
    expired, not approved yet, regions it does not cover) is the approval gate's to say."""
    record = ws.store.approval(approval_id)
    env = request.environment
    if record is None:
        raise UsageError(f"no approval request #{approval_id}")
    if record["environment"] != env:
        raise UsageError(f"approval #{approval_id} is for {record['environment']}, not {env}")
    if request.release and request.release != record["release"]:
        raise UsageError(f"approval #{approval_id} is for {record['release']}, not {request.release}")
    request.release = record["release"]
    request.regions = request.regions or list(record["regions"])
    request.approval = approval_id
    return request
