"""deploy, rollback and plan: gates, the lock, the rollout, and the record of it all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.artifact import Release, is_release_id
from conveyor.artifact.delta import Delta, build_delta
from conveyor.artifact.pointers import PointerFiles
from conveyor.engine.events import (
    BreakGlass,
    DeploymentBlocked,
    DeploymentFinished,
    DeploymentStarted,
    EventBus,
    LockTakenOver,
    Subscriber,
)
from conveyor.engine.plan import Plan, make_plan
from conveyor.engine.probe import Probe
from conveyor.engine.results import DeploymentResult, DeploymentStatus, HostStatus, RegionOutcome, RegionStatus
from conveyor.engine.rollout import Rollout, RolloutSpec, Shipment
from conveyor.errors import (
    ArtifactError,
    ConveyorError,
    DeploymentFailed,
    HeldError,
    Interrupted,
    LockHeld,
    LockLost,
    StateError,
    UsageError,
)
from conveyor.gates.approval import ApprovalNeeded
from conveyor.gates.base import GateContext
from conveyor.gates.registry import judge
from conveyor.gates.windows import evaluate, now
from conveyor.inventory import Host
from conveyor.operations.integrations import integrations
from conveyor.operations.recording import StoreRecorder
from conveyor.operations.release import record_release
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.operations.migrations import RegionMigrations
    from conveyor.state.store import Lease, Store

LEASE_SECONDS = 90.0
RENEW_RETRY_SECONDS = 2.0


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

    @property
    def overrides(self) -> list[str]:
        """The audited overrides this request asks for."""
        return [name for name, on in (("break_glass", self.break_glass), ("skip_promotion", self.skip_promotion),
                                      ("force", self.force)) if on]


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


def gate_context(ws: Workspace, request: Request, kind: str, release: str | None, *, explicit: bool = True,
                 regions: list[str] | None = None, lock_follows: bool = False,
                 migrations: Mapping[str, RegionMigrations] | None = None) -> GateContext:
    """What the gates judge of a request: its release going to `regions` (default: every region) now."""
    env = request.environment
    manifest = (ws.store.release_manifest(release) or {}) if kind == "deploy" and release is not None else {}
    return GateContext(
        config=ws.config, ledger=ws.store, environment=env, kind=kind, release=release,
        regions=tuple(regions or ws.config.environments[env].regions), explicit=explicit, manifest=manifest,
        requested_regions=tuple(request.regions), overrides=tuple(request.overrides), reason=request.reason,
        approval=request.approval, auto=request.auto, lock_follows=lock_follows, migrations=migrations, at=now())


def gates(ws: Workspace, env: str, release: str | None, kind: str, *, explicit: bool = True,
          regions: list[str] | None = None) -> list[dict[str, Any]]:
    """Every gate a plan lists and its verdict now (see conveyor.gates); the first closed one holds a deploy."""
    return judge(gate_context(ws, Request(env), kind, release, explicit=explicit, regions=regions)).listed()


def _check_gates(ws: Workspace, env: str, release: str | None, kind: str, *, explicit: bool = True,
                 lock: bool = False, regions: list[str] | None = None, request: Request | None = None,
                 migrations: Mapping[str, RegionMigrations] | None = None) -> None:
    """Raise the error of the first gate that holds; overrides the request carries are audited. Without
    `lock`, a held lock is left for taking the lock to refuse (atomically)."""
    request = request or Request(env)
    judged = judge(gate_context(ws, request, kind, release, explicit=explicit, regions=regions,
                                lock_follows=not lock, migrations=migrations))
    for verdict in judged.overridden:
        assert verdict.override is not None
        ws.store.add_event(verdict.override, ws.user, environment=env, release=release, reason=request.reason,
                           gate=verdict.detail)
    problem = judged.problem
    if isinstance(problem, ApprovalNeeded):
        # The one gate whose holding writes something: the request another person then approves.
        assert release is not None
        problem = _request_approval(ws, env, release, regions or list(ws.config.environments[env].regions),
                                    request)
    if problem is not None:
        raise problem


def _request_approval(ws: Workspace, env: str, release: str, regions: list[str], request: Request) -> HeldError:
    environment = ws.config.environments[env]
    approval_id = ws.store.request_approval(env, release, regions, ws.user, environment.approval_expires,
                                            request.reason)
    ws.store.add_event("approval_requested", ws.user, environment=env, release=release,
                       approval_id=approval_id, regions=regions)
    return HeldError(f"{env} needs approval: request #{approval_id} recorded for {release}; another person "
                     f"runs `conveyor approve {approval_id}`, then `conveyor deploy {env} --request "
                     f"{approval_id}`")


def approve(ws: Workspace, approval_id: int) -> dict[str, Any]:
    """Approve a request; the requester cannot approve their own."""
    record = ws.store.approval(approval_id)
    if record is None:
        raise UsageError(f"no approval request #{approval_id}")
    if record["requested_by"] == ws.user:
        raise HeldError(f"{ws.user} requested #{approval_id} and cannot approve it: another person must")
    if record["approved_by"] is not None:
        raise UsageError(f"#{approval_id} was already approved by {record['approved_by']}")
    if datetime.fromisoformat(record["expires_at"]) < datetime.now(UTC):
        raise HeldError(f"#{approval_id} expired at {record['expires_at']}; request a new one")
    ws.store.approve(approval_id, ws.user)
    ws.store.add_event("approved", ws.user, environment=record["environment"], approval_id=approval_id,
                       release=record["release"], requested_by=record["requested_by"])
    updated = ws.store.approval(approval_id)
    assert updated is not None
    return updated


def window_before_wave(ws: Workspace, env: str, request: Request) -> Callable[[int], str | None]:
    """A check run before each wave after the first: a closed window stops the deployment between waves."""
    name = ws.config.environments[env].window
    if name is None or request.break_glass:
        return lambda _wave: None
    window = ws.config.windows[name]

    def check(wave: int) -> str | None:
        verdict = evaluate(name, window, now())
        if verdict.open:
            return None
        when = f"; it opens {verdict.next_open.isoformat()}" if verdict.next_open else ""
        return f"window {name} closed before wave {wave} ({verdict.rule}){when}; `deploy --resume` then"

    return check


def _record_blocked(ws: Workspace, request: Request, regions: list[str], release: str | None, kind: str,
                    exc: HeldError) -> None:
    store = ws.store
    deployment_id = store.start_deployment(environment=request.environment, regions=regions, release=release,
                                           previous_by_region={}, kind=kind, user=ws.user,
                                           reason=request.reason, status="blocked")
    store.finish_deployment(deployment_id, "blocked", [], summary=exc.message)
    store.add_event("blocked", ws.user, environment=request.environment, deployment_id=deployment_id,
                    reason=exc.message, holder=exc.holder if isinstance(exc, LockHeld) else None)
    EventBus(integrations(ws, request, kind)).emit(DeploymentBlocked(
        id=deployment_id, environment=request.environment, deployment_kind=kind, release=release,
        regions=regions, user=ws.user, reason=exc.message))


def deploy(ws: Workspace, request: Request, *, subscribers: Sequence[Subscriber], confirm: Confirm | None = None,
           build: Callable[[], Release] | None = None) -> DeploymentResult:
    """Deploy a release (built now when none is named) to an environment."""
    ws.environment(request.environment)
    plan = plan_for(ws, request)
    release = build() if request.release is None and build is not None else resolve_release(ws, request.release)
    record_release(ws, release)
    targets: dict[str, str | None] = {r.region: release.id for r in plan.regions}
    shipments = {release.id: Shipment(release.id, release.sha256, release.path, release.compression)}
    schema = None
    if ws.config.migrations is not None:
        from conveyor.operations.migrations import plan_migrations

        schema = (release, plan_migrations(ws, request.environment, list(targets), release))
    return _execute(ws, request, plan, "deploy", release.id, targets, shipments, {}, subscribers, confirm,
                    schema=schema)


def rollback(ws: Workspace, request: Request, *, subscribers: Sequence[Subscriber],
             confirm: Confirm | None = None) -> DeploymentResult:
    """Switch regions back to their previous release (the one still on the hosts), or to `--to`."""
    ws.environment(request.environment)
    plan = plan_for(ws, request)
    ws.store.reap()
    try:
        # Held before we even read the hosts: a locked environment says so, whatever its hosts hold.
        _check_gates(ws, request.environment, request.release, "rollback", explicit=bool(request.release),
                     lock=True, request=request)
    except HeldError as exc:
        _record_blocked(ws, request, [r.region for r in plan.regions], request.release, "rollback", exc)
        raise
    targets: dict[str, str | None] = {}
    shipments: dict[str, Shipment] = {}
    if request.release:
        wanted = resolve_release(ws, request.release)
        shipments[wanted.id] = Shipment(wanted.id, wanted.sha256, wanted.path, wanted.compression)
        targets = {r.region: wanted.id for r in plan.regions}
        _check_schema_supports(ws, request, targets)
        return _execute(ws, request, plan, "rollback", wanted.id, targets, shipments, {}, subscribers, confirm)
    for stored in ws.artifacts.list()[:20]:
        if stored.path.is_file():  # at hand; a release a remote store lists is fetched once it is chosen
            shipments[stored.id] = Shipment(stored.id, stored.sha256, stored.path, stored.compression)
    predicted = _predict_rollback(ws, plan)
    if predicted is not None:
        # One round trip per host: each is switched on the condition that it is what the store says; a host
        # that is not is read first and moved like any other (see RolloutSpec.expect).
        targets, expect = predicted
        _check_schema_supports(ws, request, targets)
        _fetch_shipments(ws, targets, shipments)
        return _execute(ws, request, plan, "rollback", _single(targets), targets, shipments, {}, subscribers,
                        confirm, expect=expect)

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

    return _execute(ws, request, plan, "rollback", None, targets, shipments, {}, subscribers, confirm,
                    resolve=resolve)


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
            shipments[target] = Shipment(release.id, release.sha256, release.path, release.compression)


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


def _single(targets: dict[str, str | None]) -> str | None:
    values = Counter(v for v in targets.values() if v)
    return values.most_common(1)[0][0] if values else None


def _execute(ws: Workspace, request: Request, plan: Plan, kind: str, release: str | None,
             targets: dict[str, str | None], shipments: dict[str, Shipment], probes: dict[str, Probe],
             subscribers: Sequence[Subscriber], confirm: Confirm | None,
             resolve: Callable[[dict[str, Probe]], dict[str, str | None]] | None = None,
             expect: dict[str, str] | None = None,
             schema: tuple[Release, dict[str, RegionMigrations]] | None = None) -> DeploymentResult:
    env = request.environment
    store = ws.store
    store.reap()
    regions = [r.region for r in plan.regions]
    try:
        _check_gates(ws, env, release, kind, explicit=kind == "deploy" or bool(request.release), regions=regions,
                     request=request, migrations=schema[1] if schema is not None else None)
        if confirm is not None and not confirm(plan, release or "(the previous release)"):
            raise HeldError("not confirmed; nothing was changed")
        lease = store.lock(env, owner=ws.user, reason=request.reason or f"{kind} {release}",
                           lease=LEASE_SECONDS, pid=os.getpid())
    except HeldError as exc:
        _record_blocked(ws, request, regions, release, kind, exc)
        raise
    bus = EventBus(list(subscribers))
    if lease.previous is not None:
        bus.emit(LockTakenOver(environment=env, previous=lease.previous.describe(),
                 interrupted=lease.previous.deployment_id))
    # Every write of this deployment carries its lease's fencing token: once another controller holds the
    # lock, the ledger refuses them, and the deployment stops.
    ledger = store.under(lease)
    try:
        if lease.previous is not None:
            ledger.add_event("lock_taken_over", ws.user, environment=env,
                             deployment_id=lease.previous.deployment_id, previous=lease.previous.describe())
        deployment_id = ledger.start_deployment(environment=env, regions=regions, release=release,
                                                previous_by_region={}, kind=kind, user=ws.user,
                                                reason=request.reason, overrides=request.overrides,
                                                approval_id=request.approval)
    except ConveyorError:
        _let_go(store, lease)  # nothing has moved
        raise
    if request.approval is not None and not ledger.use_approval(request.approval, deployment_id):
        store.finish_deployment(deployment_id, "blocked", [], summary="approval already used")
        _let_go(store, lease)
        raise HeldError(f"approval #{request.approval} was already used")
    result = DeploymentResult(deployment_id, env, kind, release, DeploymentStatus.RUNNING)
    signals: list[int] = []  # the signals received while hosts moved (the first stops it, a second cancels)
    rollout: Rollout | None = None
    environment = ws.config.environments[env]
    stop: ConveyorError | None = None  # why it stopped early: its lease was lost, or its ledger failed
    recorder: StoreRecorder | None = None
    try:
        store.set_lock_deployment(lease, deployment_id)
        ledger.add_event(f"{kind}_started", ws.user, environment=env, deployment_id=deployment_id,
                         release=release, regions=regions)
        recorder = StoreRecorder(ledger, env, deployment_id,
                                 pointer_files=PointerFiles(ws.artifacts, ws.config.app, ws.user))
        bus.subscribe(recorder, required=True)
        spec = RolloutSpec(
            app=ws.config.app, environment=env, kind=kind, user=ws.user, deployment_id=deployment_id,
            targets=targets, shipments=shipments, probes=probes,
            limits=ws.limits(env), max_concurrency=ws.concurrency(env),
            revert_on_failure=kind == "deploy" and environment.on_failure == "rollback",
            # Bakes prove a new release. A rollback returns to the release that ran before and must not wait
            # on (or be stopped by) checks that fail because of the release it is undoing.
            bake=environment.bake if kind == "deploy" else None,
            checks=list(environment.checks) if kind == "deploy" else [],
            before_wave=window_before_wave(ws, env, request) if kind == "deploy" else None,
            deltas=_delta_factory(ws) if ws.config.artifact.delta else None,
            expect=expect or {},
            refresh_hosts=_inventory_refresher(ws, env, request) if kind == "deploy" else None,
            pull=_pull_source(ws, env),
        )
        if schema is not None and any(p.to_run for p in schema[1].values()):
            _add_migrations(ws, spec, schema[0], schema[1], deployment_id)
        if resolve is not None:
            def resolved(found: dict[str, Probe]) -> dict[str, str | None]:
                chosen = resolve(found)
                result.release = _single(chosen)
                ledger.set_release(deployment_id, result.release)
                return chosen

            spec.resolve_targets = resolved
        for subscriber in integrations(ws, request, kind):
            bus.subscribe(subscriber)
        bus.emit(DeploymentStarted(id=deployment_id, environment=env, deployment_kind=kind, release=release,
                 plan=plan, user=ws.user, reason=request.reason, overrides=request.overrides))
        if request.break_glass:
            bus.emit(BreakGlass(id=deployment_id, environment=env, deployment_kind=kind, release=release,
                     user=ws.user, reason=request.reason))
        rollout = Rollout(ws.config, spec, ws.transport(env), bus)
        try:
            outcomes, stop = _run_with_heartbeat(ledger, lease, rollout, plan, signals)
        except UsageError as exc:
            result.status, result.message = DeploymentStatus.BLOCKED, exc.message  # nothing moved
            raise
        result.regions = outcomes
        if rollout.stopped is None:
            result.status, result.message = _verdict(outcomes, plan)
            try:
                ledger.update_previous(deployment_id, {o.region: _common_previous(o) for o in outcomes})
            except (StateError, LockLost) as exc:
                stop = exc
        if signals and stop is None:
            result.status = DeploymentStatus.INTERRUPTED
            result.message = _interrupted_message(result, signals[0], hard=False)
        elif stop is not None or rollout.stopped is not None:
            stop = stop or StateError(rollout.stopped or "stopped")
            result.status = DeploymentStatus.INTERRUPTED
            result.message = _stopped_message(result, stop)
    except (KeyboardInterrupt, asyncio.CancelledError):
        # A second signal (or one the loop could not catch) cancelled hosts in the middle of a step.
        result.regions = list(rollout.outcomes.values()) if rollout is not None else []
        for region in result.regions:
            for host in region.hosts:
                if host.status == HostStatus.PENDING and host.step is not None:
                    host.status = HostStatus.INTERRUPTED
                    host.note = f"stopped during {host.step}: `current` may point at either release"
        result.status = DeploymentStatus.INTERRUPTED
        result.message = _interrupted_message(result, signals[0] if signals else signal.SIGINT, hard=True)
        raise Interrupted(result.message, result, signal_number=signals[0] if signals else signal.SIGINT) from None
    finally:
        if result.status == DeploymentStatus.RUNNING:
            result.status = DeploymentStatus.INTERRUPTED
            result.message = result.message or "stopped by an error"
        unrecorded = _close_the_record(ws, store, lease, result, None if bus.failure else recorder)
        bus.emit(DeploymentFinished(result=result))
    if stop is None and isinstance(unrecorded, LockLost):
        raise LockLost(result.message or unrecorded.message, result)
    if stop is None and unrecorded is not None:
        # The hosts did what the result says; the ledger does not know it.
        result.message = (f"deployment #{result.id} ended {result.status} on its hosts, but the state store could "
                          f"not record it: {unrecorded.message.removeprefix('state store error: ')}. Once it works "
                          f"again, `conveyor status {env} --verify` reads what the hosts run.")
        raise DeploymentFailed(result.message, result)
    if isinstance(stop, LockLost):
        raise LockLost(result.message or stop.message, result)
    if stop is not None:
        raise DeploymentFailed(result.message or stop.message, result)
    if signals:
        raise Interrupted(result.message or "interrupted", result, signal_number=signals[0])
    return result


def _let_go(store: Store, lease: Lease) -> None:
    """Release our lock if we can; a store that cannot be written leaves it to be reaped (our process ends)."""
    with contextlib.suppress(StateError):
        store.release(lease)


def _close_the_record(ws: Workspace, store: Store, lease: Lease, result: DeploymentResult,
                      recorder: StoreRecorder | None) -> ConveyorError | None:
    """Record the last host outcomes (under the lease), how the deployment ended, and let the lock go; the
    error if the store could not (the ledger then says `interrupted` once it is reaped, and the hosts say
    what they run). Its end is recorded even after the lease was lost: it never overwrites `interrupted`."""
    assert result.id is not None
    problem: ConveyorError | None = None
    if recorder is not None:
        try:
            recorder.close(result)
        except (StateError, LockLost) as exc:
            problem = exc
    if isinstance(problem, LockLost) and result.status != DeploymentStatus.INTERRUPTED:
        result.status = DeploymentStatus.INTERRUPTED
        result.message = _stopped_message(result, problem)
    try:
        store.finish_deployment(result.id, str(result.status), result.failed_hosts, summary=result.message)
        store.add_event(f"{result.kind}_finished", ws.user, environment=result.environment,
                        deployment_id=result.id, status=str(result.status), failed_hosts=result.failed_hosts)
    except StateError as exc:
        problem = problem or exc
    _let_go(store, lease)
    return problem


def _interrupted_message(result: DeploymentResult, number: int, *, hard: bool) -> str:
    """What a person reads after Ctrl-C or SIGTERM: what moved, what was cut short, the command that goes on."""
    name = signal.Signals(number).name
    moved = [h.host.name for region in result.regions for h in region.hosts if h.moved]
    cut = [f"{h.host.name} (during {h.step})" for region in result.regions for h in region.hosts
           if h.status == HostStatus.INTERRUPTED]
    env = result.environment
    parts = [f"{result.kind} #{result.id} interrupted by {name}"
             + ("" if hard else ": the hosts at work finished their step and nothing more changed")]
    parts.append(f"{len(moved)} host(s) run {result.release or 'their target'} now ({', '.join(moved)})" if moved
                 else "no host had finished moving")
    if cut:
        parts.append(f"stopped mid-step: {', '.join(cut)}; each still runs a complete release, and "
                     f"`conveyor status {env} --verify` reads which")
    again = (f"`conveyor deploy {env} --resume {result.id}` carries it on, `conveyor rollback {env}` goes back"
             if result.kind == "deploy" else f"`conveyor rollback {env}` runs the rollback again")
    return "; ".join(parts) + f". {again}."


def _stopped_message(result: DeploymentResult, stop: ConveyorError) -> str:
    """What a person reads when a deployment stopped because its lock or its ledger failed it."""
    moved = [h.host.name for region in result.regions for h in region.hosts if h.moved]
    done = (f"{len(moved)} host(s) had moved to {result.release or 'their target'} ({', '.join(moved)}) and keep "
            "it" if moved else "no host had moved")
    env = result.environment
    if isinstance(stop, LockLost):
        return (f"deployment #{result.id} stopped before its next batch: {stop.message}. {done[0].upper()}"
                f"{done[1:]}; the deployment holding the lock now carries on from what the hosts run "
                f"(`conveyor status {env} --verify` shows it).")
    again = (f"`conveyor deploy {env} --resume {result.id}` finishes this deployment" if result.kind == "deploy"
             else f"`conveyor rollback {env}` finishes the rollback")
    return (f"deployment #{result.id} stopped before the next host changed: {stop.message}. {done[0].upper()}"
            f"{done[1:]}. The hosts are the truth: once the state store works again, `conveyor status {env} "
            f"--verify` shows what each runs and {again}.")


def _add_migrations(ws: Workspace, spec: RolloutSpec, release: Release, plans: dict[str, RegionMigrations],
                    deployment_id: int) -> None:
    """Each region runs its migrations before its hosts switch: on a host of `run_on`, or here."""
    from conveyor.operations.migrations import here, migrator

    settings = ws.config.migrations
    assert settings is not None
    spec.migrate = migrator(ws, spec.environment, release, plans, deployment_id)
    if settings.run_on == "local":
        spec.migrate_here = here(ws, release)
    else:
        spec.migrate_on = settings.run_on


def _inventory_refresher(ws: Workspace, env: str,
                         request: Request) -> Callable[[str], Awaitable[list[Host] | None]] | None:
    """For an environment with inventory providers: read a region's hosts again (in a thread), for the
    catch-up at the end of each region. A provider that fails then is a warning: the region's pointer,
    written at its end, is what any host it missed starts from (`conveyor converge`)."""
    regions = ws.config.environments[env].regions
    if not any(region.inventory is not None for region in regions.values()):
        return None

    async def refresh(region: str) -> list[Host] | None:
        if regions[region].inventory is None:
            return None
        try:
            found = await asyncio.to_thread(ws.hosts, env, [region], refresh=True)
        except ConveyorError as exc:
            print(f"conveyor: warning: {env}/{region}: cannot read the inventory again to catch up hosts that "
                  f"joined: {exc.message}", file=sys.stderr)
            return None
        return [h for h in found.get(region, []) if not request.roles or h.role in request.roles]

    return refresh


PULL_URL_SECONDS = 6 * 3600  # a region's hosts may start downloading hours after the deployment started


def _pull_source(ws: Workspace, env: str) -> Callable[[str, Shipment], Awaitable[str]] | None:
    """For `transfer: pull`: the URL a region's hosts download a release from, made once per (region,
    release): the release copied into the region's own S3 store if it has one, then a presigned URL; for a
    local store (a shared filesystem), a file:// URL."""
    if ws.config.environments[env].transfer != "pull":
        return None
    made: dict[tuple[str, str], asyncio.Future[str]] = {}

    def url_for(region: str, release_id: str) -> str:
        store = ws.artifacts
        return store.download_url(store.get(release_id), region, expires=PULL_URL_SECONDS)

    async def pull(region: str, shipment: Shipment) -> str:
        key = (region, shipment.release)
        if key not in made:
            made[key] = asyncio.ensure_future(asyncio.to_thread(url_for, region, shipment.release))
        return await made[key]

    return pull


def _delta_factory(ws: Workspace) -> Callable[[str, str], Awaitable[Delta | None]]:
    """Deltas made once per (base, target) pair, in a thread, shared by every host that needs them."""
    made: dict[tuple[str, str], asyncio.Task[Delta | None]] = {}

    def build(base: str, target: str) -> Delta | None:
        if base not in ws.artifacts or target not in ws.artifacts:
            return None  # the base was built elsewhere: hosts get the whole release
        try:
            return build_delta(ws.artifacts.get(base), ws.artifacts.get(target), ws.artifacts.root / "deltas")
        except ArtifactError:
            return None

    async def delta(base: str, target: str) -> Delta | None:
        key = (base, target)
        if key not in made:
            made[key] = asyncio.create_task(asyncio.to_thread(build, base, target))
        return await asyncio.shield(made[key])

    return delta


def _common_previous(outcome: RegionOutcome) -> str | None:
    values = Counter(h.previous for h in outcome.hosts if h.previous)
    return values.most_common(1)[0][0] if values else None


def _verdict(outcomes: list[RegionOutcome], plan: Plan) -> tuple[DeploymentStatus, str | None]:
    failed = [o for o in outcomes if o.status == RegionStatus.FAILED]
    rolled = [o for o in outcomes if o.status == RegionStatus.ROLLED_BACK]
    held = [o for o in outcomes if o.status == RegionStatus.HELD]
    skipped = [o.region for o in outcomes if o.status == RegionStatus.SKIPPED]
    later = f"; later waves not started ({', '.join(skipped)})" if skipped else ""
    if failed:
        return DeploymentStatus.FAILED, "; ".join(f"{o.region}: {o.message}" for o in failed) + later
    if rolled:
        text = "; ".join(f"{o.region}: {o.message}, switched back" for o in rolled)
        return DeploymentStatus.ROLLED_BACK, text + later
    if held:
        return DeploymentStatus.HELD, "; ".join(f"{o.region}: {o.message}" for o in held) + later
    if all(o.status == RegionStatus.SUCCEEDED for o in outcomes):
        return DeploymentStatus.SUCCEEDED, None
    return DeploymentStatus.FAILED, "not every region finished"


def _run_with_heartbeat(ledger: Store, lease: Lease, rollout: Rollout, plan: Plan,
                        signals: list[int]) -> tuple[list[RegionOutcome], ConveyorError | None]:
    """Run the rollout while a thread renews our lease; SIGTERM cancels it cleanly, like Ctrl-C.

    A renewal that finds the lock someone else's, or a store that cannot be written twice in a row, stops
    the rollout before its next host changes: the outcomes, and why it stopped (None if it did not).
    """
    stop = threading.Event()
    failure: list[ConveyorError] = []

    def beat() -> None:
        failed = 0
        while not stop.wait(RENEW_RETRY_SECONDS if failed else LEASE_SECONDS / 3):
            try:
                ledger.renew(lease, LEASE_SECONDS)
                failed = 0
            except LockLost as exc:
                failure.append(exc)
            except StateError as exc:
                failed += 1
                if failed < 2:
                    continue  # once more, soon: the lease has slack for one missed beat
                failure.append(StateError(f"the state store cannot renew this deployment's lock: "
                                          f"{exc.message.removeprefix('state store error: ')}"))
            if failure:
                rollout.stop(failure[0].message)
                return

    async def main() -> list[RegionOutcome]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread() and task is not None

        def on_signal(number: int) -> None:
            # The first Ctrl-C (or SIGTERM, as CI sends when a job is cancelled) lets the hosts at work finish
            # their step and stops; a second one cancels them mid-step.
            signals.append(number)
            if len(signals) == 1:
                rollout.stop(f"interrupted by {signal.Signals(number).name}")
                print(f"conveyor: {signal.Signals(number).name}: letting the hosts at work finish their step, then "
                      "stopping (Ctrl-C again stops them at once)", file=sys.stderr, flush=True)
            elif task is not None:
                task.cancel()

        if handled:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(number, on_signal, number)
        try:
            return await rollout.run(plan)
        finally:
            if handled:
                for number in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(number)

    thread = threading.Thread(target=beat, name="conveyor-lease", daemon=True)
    thread.start()
    try:
        outcomes = asyncio.run(main())
    finally:
        stop.set()
        thread.join(timeout=5)
    cause = failure[0] if failure else rollout.bus.failure
    if cause is not None and not isinstance(cause, ConveyorError):
        cause = StateError(f"the state store cannot record this deployment: {type(cause).__name__}: {cause}")
    return outcomes, cause
