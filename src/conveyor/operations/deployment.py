"""One deployment from the lock to the record: preflight (gates, confirmation, the lock), open (the record
under the lease), move (the rollout, the lease renewed, signals taken), finish (the record closed, the lock let
go). `deploy` and `rollback` (operations/deploy.py, operations/rollback.py) say what to move; this moves it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from conveyor.artifact import Release
from conveyor.artifact.pointers import PointerFiles
from conveyor.engine.events import (
    BreakGlass,
    DeploymentFinished,
    DeploymentStarted,
    EventBus,
    LockTakenOver,
    Subscriber,
)
from conveyor.engine.plan import Plan
from conveyor.engine.probe import Probe
from conveyor.engine.results import DeploymentResult, DeploymentStatus, HostStatus, RegionOutcome, RegionStatus
from conveyor.engine.rollout import Rollout, RolloutSpec, Shipment
from conveyor.engine.spec import PROVING_KINDS, HostWork
from conveyor.engine.stack import stack_of
from conveyor.errors import (
    ConveyorError,
    DeploymentFailed,
    HeldError,
    Interrupted,
    LockLost,
    StateError,
    UsageError,
)
from conveyor.operations.gating import check_gates, record_blocked, window_before_wave
from conveyor.operations.integrations import integrations
from conveyor.operations.recording import StoreRecorder
from conveyor.operations.request import Confirm, Request
from conveyor.operations.shipping import add_migrations, delta_factory, inventory_refresher, pull_source
from conveyor.operations.stack import promotion_judge
from conveyor.operations.workspace import Workspace

if TYPE_CHECKING:
    from conveyor.flags import FlagFacts
    from conveyor.gates.base import GateVerdict
    from conveyor.inventory import Host
    from conveyor.operations.migrations import RegionMigrations
    from conveyor.state.store import Lease, Store


LEASE_SECONDS = 90.0
RENEW_RETRY_SECONDS = 2.0


@dataclass
class Job:
    """What a deployment moves: its kind, the release, each region's target and the tarballs to send."""

    kind: str  # deploy | rollback | flags
    release: str | None
    targets: dict[str, str | None]
    shipments: dict[str, Shipment]
    expect: dict[str, str] = field(default_factory=dict)  # host → what the store says it runs (rollback)
    # Reads every host first and chooses each region's target from what they hold (a rollback the store
    # cannot plan).
    resolve: Callable[[dict[str, Probe]], dict[str, str | None]] | None = None
    schema: tuple[Release, dict[str, RegionMigrations]] | None = None
    work: HostWork | None = None       # a deployment of kind `flags` writes flags files instead
    flags: FlagFacts | None = None     # what the flags gate judges
    carry: Callable[[Host], Mapping[str, str]] | None = None  # what a deploy's switch carries (flags)


class Deployment:
    """One deployment, in four steps: preflight (gates, confirmation, the lock), open (its record under the
    lease), move (the rollout, with the lease renewed and signals taken), finish (the record closed, the lock
    let go). Every way it can end leaves the record saying what the hosts run."""

    def __init__(self, ws: Workspace, request: Request, plan: Plan, job: Job, *,
                 subscribers: Sequence[Subscriber], confirm: Confirm | None) -> None:
        self.ws, self.request, self.plan, self.job = ws, request, plan, job
        self.env = request.environment
        self.regions = [r.region for r in plan.regions]
        self.store = ws.store
        self.bus = EventBus(list(subscribers))
        self.confirm = confirm
        self.signals: list[int] = []  # received while hosts moved: the first stops it, a second cancels
        self.rollout: Rollout | None = None
        self.recorder: StoreRecorder | None = None
        self.stop: ConveyorError | None = None  # why it stopped early: its lease was lost, or its ledger failed
        self.warnings: list[GateVerdict] = []  # open gates the person deploying must hear (shown and recorded)

    def run(self) -> DeploymentResult:
        """Run the deployment; the result, or the error that carries it (stopped, interrupted, unrecorded)."""
        lease = self.preflight()
        ledger, result = self.open(lease)
        try:
            self.move(ledger, lease, result)
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.cut_short(result)
            number = self.signals[0] if self.signals else signal.SIGINT
            raise Interrupted(result.message or "interrupted", result, signal_number=number) from None
        finally:
            if result.status == DeploymentStatus.RUNNING:
                result.status = DeploymentStatus.INTERRUPTED
                result.message = result.message or "stopped by an error"
            unrecorded = _close_the_record(self.ws, self.store, lease, result,
                                           None if self.bus.failure else self.recorder)
            self.bus.emit(DeploymentFinished(result=result))
        return self.outcome(result, unrecorded)

    def preflight(self) -> Lease:
        """The gates, the person's confirmation and the lock; a hold is recorded as `blocked`."""
        ws, request, job = self.ws, self.request, self.job
        self.store.reap()
        try:
            self.warnings = check_gates(
                ws, self.env, job.release, job.kind, explicit=job.kind == "deploy" or bool(request.release),
                regions=self.regions, request=request,
                migrations=job.schema[1] if job.schema is not None else None, flags=job.flags)
            if self.confirm is not None and not self.confirm(self.plan, job.release or "(the previous release)"):
                raise HeldError("not confirmed; nothing was changed")
            return self.store.lock(self.env, owner=ws.user, reason=request.reason or f"{job.kind} {job.release}",
                                   lease=LEASE_SECONDS, pid=os.getpid())
        except HeldError as exc:
            record_blocked(ws, request, self.regions, job.release, job.kind, exc)
            raise

    def open(self, lease: Lease) -> tuple[Store, DeploymentResult]:
        """The deployment's record, written under the lease: every later write carries its fencing token, so
        once another controller holds the lock the ledger refuses them and the deployment stops."""
        ws, request, job = self.ws, self.request, self.job
        if lease.previous is not None:
            self.bus.emit(LockTakenOver(environment=self.env, previous=lease.previous.describe(),
                                        interrupted=lease.previous.deployment_id))
        ledger = self.store.under(lease)
        try:
            if lease.previous is not None:
                ledger.add_event("lock_taken_over", ws.user, environment=self.env,
                                 deployment_id=lease.previous.deployment_id, previous=lease.previous.describe())
            deployment_id = ledger.start_deployment(environment=self.env, regions=self.regions, release=job.release,
                                                    previous_by_region={}, kind=job.kind, user=ws.user,
                                                    reason=request.reason, overrides=request.overrides,
                                                    approval_id=request.approval)
        except ConveyorError:
            _let_go(self.store, lease)  # nothing has moved
            raise
        if request.approval is not None and not ledger.use_approval(request.approval, deployment_id):
            self.store.finish_deployment(deployment_id, "blocked", [], summary="approval already used")
            _let_go(self.store, lease)
            raise HeldError(f"approval #{request.approval} was already used")
        return ledger, DeploymentResult(deployment_id, self.env, job.kind, job.release, DeploymentStatus.RUNNING,
                                        warnings=[f"{w.name}: {w.detail}" for w in self.warnings])

    def move(self, ledger: Store, lease: Lease, result: DeploymentResult) -> None:
        """Run the rollout and judge how it went."""
        ws, request, job, env = self.ws, self.request, self.job, self.env
        assert result.id is not None
        deployment_id = result.id
        self.store.set_lock_deployment(lease, deployment_id)
        ledger.add_event(f"{job.kind}_started", ws.user, environment=env, deployment_id=deployment_id,
                         release=job.release, regions=self.regions)
        self.recorder = StoreRecorder(ledger, env, deployment_id,
                                      pointer_files=PointerFiles(ws.artifacts, ws.config.app, ws.user),
                                      pointers=job.work is None)
        self.bus.subscribe(self.recorder, required=True)
        spec = self.spec(deployment_id)
        if job.resolve is not None:
            resolve = job.resolve

            def resolved(found: dict[str, Probe]) -> dict[str, str | None]:
                chosen = resolve(found)
                result.release = single_target(chosen)
                ledger.set_release(deployment_id, result.release)
                return chosen

            spec.resolve_targets = resolved
        for subscriber in integrations(ws, request, job.kind):
            self.bus.subscribe(subscriber)
        self.bus.emit(DeploymentStarted(id=deployment_id, environment=env, deployment_kind=job.kind,
                                        release=job.release, plan=self.plan, user=ws.user, reason=request.reason,
                                        overrides=request.overrides))
        for warning in self.warnings:  # after the start, so the display shows them with the deployment
            ledger.add_event("gate_warning", ws.user, environment=env, deployment_id=deployment_id,
                             release=job.release, gate=warning.name, detail=warning.detail)
            self.bus.warn(warning.name, f"{env}: {warning.detail}")
        if request.break_glass:
            self.bus.emit(BreakGlass(id=deployment_id, environment=env, deployment_kind=job.kind,
                                     release=job.release, user=ws.user, reason=request.reason))
        rollout = self.rollout = Rollout(ws.config, spec, ws.transport(env), self.bus)
        try:
            outcomes, self.stop = _run_with_heartbeat(ledger, lease, rollout, self.plan, self.signals)
        except UsageError as exc:
            result.status, result.message = DeploymentStatus.BLOCKED, exc.message  # nothing moved
            raise
        result.regions = outcomes
        if rollout.stopped is None:
            result.status, result.message = _verdict(outcomes, self.plan)
            try:
                ledger.update_previous(deployment_id, {o.region: _common_previous(o) for o in outcomes})
            except (StateError, LockLost) as exc:
                self.stop = exc
        if self.signals and self.stop is None:
            result.status = DeploymentStatus.INTERRUPTED
            result.message = _interrupted_message(result, self.signals[0], hard=False)
        elif self.stop is not None or rollout.stopped is not None:
            self.stop = self.stop or StateError(rollout.stopped or "stopped")
            result.status = DeploymentStatus.INTERRUPTED
            result.message = _stopped_message(result, self.stop)

    def spec(self, deployment_id: int) -> RolloutSpec:
        """What the engine needs to know to move this deployment's hosts."""
        ws, request, job, env = self.ws, self.request, self.job, self.env
        environment = ws.config.environments[env]
        deploying = job.kind in PROVING_KINDS
        windowed = job.flags is None or job.flags.windowed
        spec = RolloutSpec(
            app=ws.config.app, environment=env, kind=job.kind, user=ws.user, deployment_id=deployment_id,
            targets=job.targets, shipments=job.shipments, probes={},
            limits=ws.limits(env), max_concurrency=ws.concurrency(env),
            revert_on_failure=deploying and environment.on_failure == "rollback",
            # Bakes prove a new release. A rollback returns to the release that ran before and must not wait
            # on (or be stopped by) checks that fail because of the release it is undoing.
            bake=environment.bake if deploying else None,
            checks=list(environment.checks) if deploying else [],
            before_wave=window_before_wave(ws, env, request) if deploying and windowed else None,
            deltas=delta_factory(ws) if ws.config.artifact.delta else None,
            expect=job.expect,
            refresh_hosts=inventory_refresher(ws, env, request) if deploying else None,
            pull=pull_source(ws, env),
            stack=stack_of(ws.config.consistency),
            judge_stack=(promotion_judge(ws, env, job.release) if deploying and not request.accept_drift
                         else None),
            work=job.work,
            carry=job.carry,
        )
        if job.schema is not None and any(p.to_run for p in job.schema[1].values()):
            add_migrations(ws, spec, job.schema[0], job.schema[1], deployment_id)
        return spec

    def cut_short(self, result: DeploymentResult) -> None:
        """A second signal (or one the loop could not catch) cancelled hosts in the middle of a step: record
        where each was."""
        result.regions = list(self.rollout.outcomes.values()) if self.rollout is not None else []
        for region in result.regions:
            for host in region.hosts:
                if host.status == HostStatus.PENDING and host.step is not None:
                    host.status = HostStatus.INTERRUPTED
                    host.note = f"stopped during {host.step}: `current` may point at either release"
        result.status = DeploymentStatus.INTERRUPTED
        result.message = _interrupted_message(result, self.signals[0] if self.signals else signal.SIGINT, hard=True)

    def outcome(self, result: DeploymentResult, unrecorded: ConveyorError | None) -> DeploymentResult:
        """The result, or the error carrying it when the deployment stopped, was interrupted or went
        unrecorded."""
        stop = self.stop
        if stop is None and isinstance(unrecorded, LockLost):
            raise LockLost(result.message or unrecorded.message, result)
        if stop is None and unrecorded is not None:
            # The hosts did what the result says; the ledger does not know it.
            result.message = (f"deployment #{result.id} ended {result.status} on its hosts, but the state store "
                              f"could not record it: {unrecorded.message.removeprefix('state store error: ')}. "
                              f"Once it works again, `conveyor status {self.env} --verify` reads what the hosts "
                              "run.")
            raise DeploymentFailed(result.message, result)
        if isinstance(stop, LockLost):
            raise LockLost(result.message or stop.message, result)
        if stop is not None:
            raise DeploymentFailed(result.message or stop.message, result)
        if self.signals:
            raise Interrupted(result.message or "interrupted", result, signal_number=self.signals[0])
        return result


def single_target(targets: dict[str, str | None]) -> str | None:
    values = Counter(v for v in targets.values() if v)
    return values.most_common(1)[0][0] if values else None

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
