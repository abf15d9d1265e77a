"""The rollout executor: waves in order, regions of a wave together, roles in order, batches in order.

One coroutine per host, a semaphore for concurrency, one connection per host reused for every phase.
Every host's outcome is collected; a region that fails beyond `max_failures` is switched back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from conveyor.artifact.delta import Delta
from conveyor.checks import Place, kind_of
from conveyor.config.models import Check, Config
from conveyor.engine import commands
from conveyor.engine.checking import OnHost
from conveyor.engine.events import (
    BakeFinished,
    BakeStarted,
    BatchStarted,
    CanaryBakeFinished,
    CanaryBakeStarted,
    EventBus,
    HostFinished,
    HostReverting,
    HostsJoined,
    HostStarted,
    HostStep,
    Measured,
    MigrationsFinished,
    MigrationsStarted,
    RegionFinished,
    RegionRollingBack,
    RegionStarted,
    WaveFinished,
    WaveHeld,
    WaveStarted,
)
from conveyor.engine.limits import Limits
from conveyor.engine.plan import Plan, RegionPlan
from conveyor.engine.probe import Probe, current_at_exit, last_step, parse_probe, tail
from conveyor.engine.results import HostOutcome, HostStatus, RegionOutcome, RegionStatus
from conveyor.errors import ConveyorError, TransportError
from conveyor.gates.analysis import Fetch, Measurement, Scope, Verdict, WatchResult, http_fetch, watch
from conveyor.inventory import Host
from conveyor.secrets import mask
from conveyor.transport.base import Completed, Connection, Transport

T = TypeVar("T")


@dataclass(frozen=True)
class Shipment:
    """A release's tarball on the controller, ready to send to hosts that lack it."""

    release: str
    sha256: str
    path: Path
    compression: str = "gzip"


MigrationRun = Callable[[str, dict[str, str], float], Awaitable[Completed]]


@dataclass
class RolloutSpec:
    """Everything a rollout needs besides the plan: who, what, where, and the limits."""

    app: str
    environment: str
    kind: str                                  # deploy | rollback
    user: str
    deployment_id: int | None
    targets: dict[str, str | None]             # region → release to run (None: no release, undo a first deploy)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)   # host key → a probe made just before
    # host key → the release the state store says it runs: such a host is switched in one round trip, on
    # the condition (checked on the host) that it runs that and its journal agrees; otherwise it is read first.
    expect: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)   # region → its limits
    max_concurrency: int = 64                                  # hosts at once across the environment
    revert_on_failure: bool = True
    bake: float | None = None                                  # watch between waves, seconds
    checks: list[Check] = field(default_factory=list)          # the environment's analysis checks
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    fetch: Fetch | None = None                                 # HTTP for Prometheus/Alertmanager
    before_wave: Callable[[int], str | None] | None = None     # a reason to stop before wave N (N > 1)
    deltas: Callable[[str, str], Awaitable[Delta | None]] | None = None  # (base, target) → what changed
    # A rollback reads every host first (over the connections it then reuses) and decides the targets.
    resolve_targets: Callable[[dict[str, Probe]], dict[str, str | None]] | None = None
    # A region's hosts as its inventory lists them now (None if it cannot be read): hosts that joined while
    # the region moved are caught up at its end; failed hosts that left are not failures.
    refresh_hosts: Callable[[str], Awaitable[list[Host] | None]] | None = None
    # transfer: pull — (region, shipment) → a URL the region's hosts download the tarball from themselves.
    pull: Callable[[str, Shipment], Awaitable[str]] | None = None
    bake_canaries: bool = True                                 # converge moves one host: no canary bake
    # Schema migrations of a region, run before any of its hosts switches: (region, run) → why it failed, or
    # None. `run(command, env, timeout)` runs a command in the new release's directory on one host of the
    # role `migrate_on` (the release is put there first), or on this machine with `migrate_here`.
    migrate: Callable[[str, MigrationRun], Awaitable[str | None]] | None = None
    migrate_on: str | None = None
    migrate_here: MigrationRun | None = None

    def limits_for(self, region: str) -> Limits:
        """A region's limits (defaults when it has none of its own)."""
        return self.limits.get(region) or Limits()


class Connections:
    """One connection per host, opened on first use and closed together at the end."""

    def __init__(self, transport: Transport, timeout_for: Callable[[Host], float]) -> None:
        self.transport = transport
        self.timeout_for = timeout_for
        self._open: dict[str, Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, host: Host) -> Connection:
        """The host's connection, opening it within the connect timeout."""
        lock = self._locks.setdefault(host.key, asyncio.Lock())
        async with lock:
            if host.key not in self._open:
                timeout = self.timeout_for(host)
                try:
                    self._open[host.key] = await asyncio.wait_for(self.transport.connect(host), timeout)
                except TimeoutError:
                    raise TransportError(f"{host.name}: no connection within {timeout:g}s") from None
            return self._open[host.key]

    async def close(self) -> None:
        """Close every connection; a failure to close is not worth reporting."""
        for connection in self._open.values():
            with contextlib.suppress(Exception):  # closing is best effort
                await connection.close()
        self._open.clear()


EXPECTATION_UNMET = 15  # activate's exit code when a host is not what the state store expected: nothing changed


class StepFailed(Exception):
    """A host step failed; carries what the outcome needs."""

    def __init__(self, step: str, message: str, completed: Completed | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.completed = completed


class Rollout:
    """Moves the hosts of a plan to their region's target release."""

    def __init__(self, config: Config, spec: RolloutSpec, transport: Transport, bus: EventBus) -> None:
        self.config = config
        self.spec = spec
        self.transport = transport
        self.bus = bus
        # The transport gives up first, with a precise reason; this outer bound is the engine's guarantee.
        self.connections = Connections(
            transport, lambda host: spec.limits_for(host.region).connect_timeout * 2 + 1)
        self.semaphore = asyncio.Semaphore(spec.max_concurrency)
        self.region_semaphores = {region: asyncio.Semaphore(limits.max_concurrency)
                                  for region, limits in spec.limits.items()}
        self.stopped: str | None = None  # why this rollout stopped changing hosts (see stop)
        self.outcomes: dict[str, RegionOutcome] = {}  # every region's outcome so far, also after a cancel
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None  # set by stop(): bakes end early

    def stop(self, reason: str) -> None:
        """Stop changing hosts (callable from any thread): hosts at work finish what they do, and nothing
        else moves or is switched back; a bake under way ends at once; regions not finished end `interrupted`.
        The first reason stands."""
        if self.stopped is None:
            self.stopped = reason
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile: nothing left to wake
                self._loop.call_soon_threadsafe(self._stopping.set)

    async def _unless_stopped(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None if stop() is called first (the work is then cancelled)."""
        task = asyncio.ensure_future(work)
        if self._stopping is None:
            return await task
        waiter = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    def _interrupted(self, region: RegionOutcome | None = None) -> bool:
        """Whether hosts must stop changing: stop() was called, or a required subscriber failed (the ledger
        cannot record). Marks a `region` that has not ended interrupted."""
        if self.stopped is None and self.bus.failure is not None:
            failure = self.bus.failure
            self.stop(failure.message if isinstance(failure, ConveyorError) else f"{type(failure).__name__}: {failure}")
        if self.stopped is None:
            return False
        if region is not None and region.status in (RegionStatus.PENDING, RegionStatus.INTERRUPTED):
            if region.status == RegionStatus.PENDING:
                region.message = f"{region.message}; then {self.stopped}" if region.message else self.stopped
            region.status = RegionStatus.INTERRUPTED
        return True

    async def run(self, plan: Plan) -> list[RegionOutcome]:
        """Run every wave; after a failed wave, later waves are skipped. Returns every region's outcome."""
        outcomes: dict[str, RegionOutcome] = {
            region.region: RegionOutcome(region.region, self.spec.targets.get(region.region),
                                         hosts=[HostOutcome(h) for h in region.hosts])
            for region in plan.regions
        }
        self.outcomes = outcomes
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        if self.stopped is not None:
            self._stopping.set()
        try:
            if self.spec.resolve_targets is not None:
                await self._resolve(plan, outcomes)
            stop = False
            for number, wave in enumerate(plan.waves, start=1):
                if self._interrupted():
                    for region in wave:
                        self._interrupted(outcomes[region.region])
                    continue
                if stop:
                    for region in wave:
                        outcomes[region.region].status = RegionStatus.SKIPPED
                        outcomes[region.region].message = "an earlier wave did not finish"
                    continue
                reason = self.spec.before_wave(number) if self.spec.before_wave and number > 1 else None
                if reason:
                    # Stop between waves, never inside a region; the rest waits for a person to resume.
                    for later in plan.waves[number - 1:]:
                        for region in later:
                            outcomes[region.region].status = RegionStatus.HELD
                            outcomes[region.region].message = reason
                    self.bus.emit(WaveHeld(wave=number, reason=reason))
                    break
                self.bus.emit(WaveStarted(wave=number, regions=[r.region for r in wave]))
                await asyncio.gather(*(self._region(region, outcomes[region.region]) for region in wave))
                failed = [r.region for r in wave if outcomes[r.region].status != RegionStatus.SUCCEEDED]
                if not failed and number < len(plan.waves):
                    await self._bake(number, [outcomes[r.region] for r in wave])
                    failed = [r.region for r in wave if outcomes[r.region].status != RegionStatus.SUCCEEDED]
                self.bus.emit(WaveFinished(wave=number, failed=failed))
                stop = bool(failed)
        finally:
            await self.connections.close()
            await self.transport.aclose()
        return list(outcomes.values())

    async def _resolve(self, plan: Plan, outcomes: dict[str, RegionOutcome]) -> None:
        """Probe every host, then let the caller choose each region's target from what they hold."""
        async def probe(host: Host) -> tuple[str, Probe | None]:
            async with self._slot(host):
                try:
                    connection = await self.connections.get(host)
                    done = await connection.run(commands.probe(self._deploy_to(host), ""),
                                                timeout=self.spec.limits_for(host.region).command_timeout)
                except TransportError:
                    return host.key, None  # the host fails again, with its reason, when it is moved
                return host.key, parse_probe(done.output) if done.exit_code == 0 else None

        found = {key: p for key, p in await asyncio.gather(*(probe(h) for h in plan.hosts)) if p is not None}
        assert self.spec.resolve_targets is not None
        self.spec.targets = self.spec.resolve_targets(found)
        self.spec.probes.update(found)
        for region, outcome in outcomes.items():
            outcome.target = self.spec.targets.get(region)

    # -- watching -----------------------------------------------------------------------------
    async def _bake(self, wave: int, regions: list[RegionOutcome]) -> None:
        """Watch a finished wave for the bake period; a failure rolls the wave back (or halts it).
        Only a deploy bakes (see `_canary_bake`)."""
        bake = self.spec.bake if self.spec.kind == "deploy" else None
        moved = [r for r in regions if any(h.status == HostStatus.SUCCEEDED for h in r.hosts)]
        if not bake or not moved:
            return  # nothing moved in this wave (a resumed deployment): nothing new to watch
        self.bus.emit(BakeStarted(wave=wave, regions=[r.region for r in moved], seconds=bake))
        watched = await self._unless_stopped(
            asyncio.gather(*(self._watch_region(r, self.spec.checks, bake, "bake") for r in moved)))
        if watched is None:  # stopped: the wave's hosts keep what they run; nothing more is judged
            for region in moved:
                self._interrupted(region)
            self.bus.emit(BakeFinished(wave=wave, verdicts=dict.fromkeys((r.region for r in moved),
                                                                             "interrupted")))
            return
        results = watched
        for region, result in zip(moved, results, strict=True):
            if result.verdict == Verdict.PASS:
                continue
            if result.verdict == Verdict.INCONCLUSIVE:
                region.status = RegionStatus.HELD
                region.message = f"bake inconclusive: {result.reason}; a person must decide (deploy --resume)"
                continue
            region.message = f"bake failed: {result.reason}"
            await self._halt(region)
        self.bus.emit(BakeFinished(wave=wave, verdicts={r.region: str(x.verdict)
                                                            for r, x in zip(moved, results, strict=True)}))

    async def _watch_region(self, region: RegionOutcome, checks: list[Check], seconds: float,
                            phase: str, hosts: list[HostOutcome] | None = None) -> WatchResult:
        """Run `checks` for `seconds` against a region (and, for host checks, its moved hosts)."""
        scope = Scope(app=self.spec.app, environment=self.spec.environment, region=region.region,
                      release=region.target, host=None)
        targets = hosts if hosts is not None else [h for h in region.hosts if h.status == HostStatus.SUCCEEDED]
        plans: list[tuple[Check, Scope]] = []
        for check in checks:
            spread = kind_of(check).spread(check)
            if spread == "region":
                plans.append((check, scope))
                continue
            chosen = targets[:1] if spread == "one" else targets
            plans += [(check, Scope(app=scope.app, environment=scope.environment, region=scope.region,
                                    release=scope.release, host=h.host.name)) for h in chosen]
        by_name = {h.host.name: h for h in targets}

        async def measure_other(check: Check, where: Scope) -> Measurement:
            return await self._measure_on_host(check, where, by_name.get(where.host or ""))

        def record(measurement: Measurement) -> None:
            self.bus.emit(Measured(phase=phase, measurement=measurement))

        # Over a bake, every check watches for the whole period, at its own interval.
        groups: dict[Scope, list[Check]] = {}
        for check, where in plans:
            groups.setdefault(where, []).append(check.model_copy(update={"duration": seconds, "count": None}))
        results = await asyncio.gather(*(
            watch(group, where, clock=self.spec.clock, sleep=self.spec.sleep, fetch=self.spec.fetch or http_fetch,
                  measure_other=measure_other, on_measurement=record)
            for where, group in groups.items()))
        return _combine(results)

    async def _measure_on_host(self, check: Check, scope: Scope, outcome: HostOutcome | None) -> Measurement:
        """Measure an http or command check once, on a host (or on the controller for `on: local`)."""
        on_host = None if outcome is None else self._on_host(outcome, outcome.release or "", track=False)
        return await kind_of(check).measure(check, self._place(scope, on_host))

    def _on_host(self, outcome: HostOutcome, release: str, *, track: bool) -> OnHost:
        """The host as its checks reach it; verification `track`s its step, a bake's measurements do not."""
        host = outcome.host
        deploy_to = self._deploy_to(host)

        async def run(command: str, timeout: float) -> Completed:
            return await self._run(outcome, "check", command, timeout=timeout, track=track)

        async def connection() -> Connection:
            return await self.connections.get(host)

        return OnHost(run, connection, f"{deploy_to}/releases/{release}",
                      self._env(host, release, outcome.previous, self.spec.kind, deploy_to))

    def _place(self, scope: Scope, on_host: OnHost | None) -> Place:
        return Place(scope, host=on_host, fetch=self.spec.fetch or http_fetch, clock=self.spec.clock,
                     sleep=self.spec.sleep)

    # -- regions ----------------------------------------------------------------------------
    async def _region(self, plan: RegionPlan, outcome: RegionOutcome) -> None:
        target = outcome.target
        by_host = {o.host.key: o for o in outcome.hosts}
        self.bus.emit(RegionStarted(region=plan.region, release=target, hosts=len(outcome.hosts)))
        started = time.monotonic()
        if self._interrupted(outcome):
            self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                          message=outcome.message, duration=time.monotonic() - started))
            return
        if self.spec.migrate is not None and target is not None:
            problem = await self._migrations(plan, outcome, target)
            if problem is not None:
                outcome.status, outcome.message = RegionStatus.FAILED, problem  # no host has switched
                self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                              message=outcome.message, duration=time.monotonic() - started))
                return
        for role in plan.roles:
            role_outcomes = [by_host[h.key] for h in role.hosts]
            for batch in role.batches:
                members = [by_host[h.key] for h in batch.hosts]
                self.bus.emit(BatchStarted(region=plan.region, role=role.role, batch=batch.number,
                              canary=batch.canary, hosts=[h.name for h in batch.hosts]))
                # Before every batch (the recorder confirms the lease as it records the batch's start), and
                # after it: a rollout that must stop lets the batch in flight finish and changes nothing more.
                if not self._interrupted(outcome):
                    await asyncio.gather(*(self._host(o, target) for o in members))
                if self._interrupted(outcome):
                    self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                                  message=outcome.message, duration=time.monotonic() - started))
                    return
                if self.spec.revert_on_failure:
                    # A failed host does not keep serving the release that failed on it, whether or not it is
                    # still in the inventory.
                    await asyncio.gather(*(self._revert(o) for o in members if o.failed and o.moved))
                if self.spec.refresh_hosts is not None and any(o.failed for o in members):
                    await self._departed(outcome)  # a host scaled in mid-deployment is gone, not failed
                failures = sum(1 for o in role_outcomes if o.failed)
                if batch.canary and failures <= role.max_failures:
                    verdict = await self._canary_bake(outcome, role.role, members)
                    if verdict is not None:
                        outcome.message = verdict
                        if outcome.status == RegionStatus.HELD:
                            self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                                          message=outcome.message, duration=time.monotonic() - started))
                            return
                        failures = len(role_outcomes)  # a canary that fails its bake condemns the role
                if failures > role.max_failures:
                    outcome.message = outcome.message or (
                        f"{failures} of {len(role_outcomes)} {role.role} host(s) failed "
                        f"(max_failures {role.max_failures}); region halted")
                    await self._halt(outcome)
                    self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                                  message=outcome.message, duration=time.monotonic() - started))
                    return
        if self.spec.refresh_hosts is not None and not await self._catch_up(plan, outcome):
            await self._halt(outcome)
            self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                          message=outcome.message, duration=time.monotonic() - started))
            return
        outcome.status = RegionStatus.SUCCEEDED
        self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status), release=target,
                      message=outcome.message, duration=time.monotonic() - started))

    async def _migrations(self, plan: RegionPlan, outcome: RegionOutcome, target: str) -> str | None:
        """Run the region's migrations before any of its hosts switches; why they failed, or None."""
        assert self.spec.migrate is not None
        run: MigrationRun
        if self.spec.migrate_on is None:
            assert self.spec.migrate_here is not None
            run = self.spec.migrate_here
        else:
            role = self.spec.migrate_on
            host = next((o for o in outcome.hosts if o.host.role == role), None)
            if host is None:
                return f"migrations run on a {role} host, and this region has none in this deployment"
            try:
                path = await self.stage(host, target)
            except StepFailed as exc:
                return f"cannot put {target} on {host.host.name} to run the migrations: {exc}"
            except TransportError as exc:
                return f"cannot reach {host.host.name} to run the migrations: {exc.message}"
            chosen = host

            async def run(command: str, env: dict[str, str], timeout: float) -> Completed:
                try:
                    return await self._run(chosen, "migrate", commands.check(path, command, 0, 0, env),
                                           timeout=timeout, track=False)
                except TransportError as exc:
                    return Completed(exit_code=255, output=f"{chosen.host.name}: {exc.message}")

        self.bus.emit(MigrationsStarted(region=plan.region, release=target))
        problem = await self.spec.migrate(plan.region, run)
        self.bus.emit(MigrationsFinished(region=plan.region, release=target, problem=problem))
        return problem

    async def _catch_up(self, plan: RegionPlan, outcome: RegionOutcome, rounds: int = 3) -> bool:
        """Move the hosts that joined the region's inventory while it moved (launched by an autoscaler);
        False when they fail beyond their role's max_failures. Bounded: a few rounds, then the region's
        pointer (written at its end) is what later hosts start from."""
        roles = {role.role: role for role in plan.roles}
        for _ in range(rounds):
            current = await self._departed(outcome)
            if current is None:
                return True
            known = {o.host.key for o in outcome.hosts}
            joined = [HostOutcome(h) for h in current if h.key not in known and h.role in roles]
            if not joined:
                return True
            self.bus.emit(HostsJoined(region=plan.region, hosts=[o.host.name for o in joined]))
            outcome.hosts.extend(joined)
            if self._interrupted(outcome):
                return False
            await asyncio.gather(*(self._host(o, outcome.target) for o in joined))
            if self._interrupted(outcome):
                return False
            if self.spec.revert_on_failure:
                await asyncio.gather(*(self._revert(o) for o in joined if o.failed and o.moved))
            if any(o.failed for o in joined):
                await self._departed(outcome)  # one that failed as it left is gone, not failed
            for name, role in roles.items():
                failures = sum(1 for o in outcome.hosts if o.host.role == name and o.failed)
                if failures > role.max_failures:
                    outcome.message = (f"{failures} {name} host(s) failed, counting hosts that joined during the "
                                       f"deployment (max_failures {role.max_failures}); region halted")
                    return False
        return True

    async def _departed(self, outcome: RegionOutcome) -> list[Host] | None:
        """Read the region's inventory again; failed hosts no longer in it have left (scaled in): they are
        marked so and do not count as failures. The hosts listed now, or None when it cannot be read."""
        assert self.spec.refresh_hosts is not None
        current = await self.spec.refresh_hosts(outcome.region)
        if current is None:
            return None
        listed = {h.key for h in current}
        for gone in [o for o in outcome.hosts if o.failed and o.host.key not in listed]:
            gone.failed = False
            gone.status = HostStatus.LEFT
            after = f"; {gone.note}" if gone.note else ""  # switched back, or why it could not be
            gone.note = f"left the inventory during the deployment (was: {gone.error}){after}"
            self.bus.emit(HostFinished(outcome=gone))
        return current

    async def _canary_bake(self, region: RegionOutcome, role: str, canaries: list[HostOutcome]) -> str | None:
        """Watch the canaries for the role's `canary_bake`; a sentence if they failed or are undecided.

        Only a deploy bakes its canaries: a rollback returns to what ran before, and a region-wide signal
        still showing the release being undone must not halt it after its first host."""
        seconds = self.config.roles[role].canary_bake if self.spec.kind == "deploy" and self.spec.bake_canaries \
            else None
        moved = [o for o in canaries if o.status == HostStatus.SUCCEEDED]
        if not seconds or not moved:
            return None
        checks = [*self.config.roles[role].checks, *self.spec.checks]
        self.bus.emit(CanaryBakeStarted(region=region.region, role=role, hosts=[o.host.name for o in moved],
                      seconds=seconds))
        watched = await self._unless_stopped(self._watch_region(region, checks, seconds, "canary_bake", hosts=moved))
        if watched is None:  # stopped: the canaries keep what they run, and the next batch never starts
            self.bus.emit(CanaryBakeFinished(region=region.region, role=role, verdict="interrupted",
                          reason=self.stopped or "stopped"))
            return None
        result = watched
        self.bus.emit(CanaryBakeFinished(region=region.region, role=role, verdict=str(result.verdict),
                      reason=result.reason))
        if result.verdict == Verdict.PASS:
            return None
        if result.verdict == Verdict.INCONCLUSIVE:
            region.status = RegionStatus.HELD
            return f"{role} canary bake inconclusive: {result.reason}; a person must decide (deploy --resume)"
        for canary in moved:
            canary.failed = True
            canary.status = HostStatus.FAILED
            canary.step = "canary_bake"
            canary.error = f"canary bake failed: {result.reason}"
            self.bus.emit(HostFinished(outcome=canary))
        return f"{role} canary bake failed: {result.reason}; region halted"

    async def _halt(self, outcome: RegionOutcome) -> None:
        if self._interrupted(outcome):
            return  # switching back is changing hosts too
        if not self.spec.revert_on_failure:
            outcome.status = RegionStatus.FAILED
            return
        moved = [o for o in outcome.hosts if o.moved]
        if moved:
            self.bus.emit(RegionRollingBack(region=outcome.region, hosts=[o.host.name for o in moved]))
        await asyncio.gather(*(self._revert(o) for o in moved))
        stuck = [o.host.name for o in outcome.hosts if o.moved]
        if stuck:
            outcome.status = RegionStatus.FAILED
            outcome.message = f"{outcome.message}; could not switch back: {', '.join(stuck)}"
        else:
            outcome.status = RegionStatus.ROLLED_BACK

    # -- hosts ------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _slot(self, host: Host) -> AsyncIterator[None]:
        """A place among the hosts working at once: in the environment, and in the host's region."""
        async with self.semaphore:
            region = self.region_semaphores.get(host.region)
            if region is None:
                yield
            else:
                async with region:
                    yield

    async def _host(self, outcome: HostOutcome, target: str | None) -> None:
        host = outcome.host
        outcome.target = target
        async with self._slot(host):
            if self._interrupted():
                return  # not reached: it stays pending
            started = time.monotonic()
            self.bus.emit(HostStarted(host=host.name, region=host.region, role=host.role))
            try:
                await self._move(outcome, target)
            except StepFailed as exc:
                outcome.failed = True
                outcome.status = HostStatus.FAILED
                outcome.step = exc.step
                outcome.error = mask(str(exc))
                if exc.completed is not None:
                    outcome.exit_code = exc.completed.exit_code
                    outcome.output_tail = mask(tail(exc.completed.output))
            except TransportError as exc:
                outcome.failed = True
                outcome.status = HostStatus.FAILED
                outcome.step = outcome.step or "connect"
                outcome.error = mask(exc.message)
            outcome.duration = time.monotonic() - started
            self.bus.emit(HostFinished(outcome=outcome))

    async def _run(self, outcome: HostOutcome, step: str, command: str, *, stdin: Path | None = None,
                   timeout: float | None = None, track: bool = True) -> Completed:
        connection = await self.connections.get(outcome.host)
        if track:
            outcome.step = step
        self.bus.emit(HostStep(host=outcome.host.name, region=outcome.host.region, step=step))
        limit = self.spec.limits_for(outcome.host.region).command_timeout
        return await connection.run(command, stdin=stdin, timeout=timeout or limit)

    def _deploy_to(self, host: Host) -> str:
        return self.transport.deploy_path(host, self.config.target_dir)

    async def _move(self, outcome: HostOutcome, target: str | None) -> None:
        host = outcome.host
        deploy_to = self._deploy_to(host)
        probe = self.spec.probes.get(host.key)
        expected = self.spec.expect.get(host.key)
        if probe is None and expected is not None and target is not None and expected != target:
            outcome.previous = outcome.release = expected
            if await self._activate(outcome, target, self.spec.kind, expected, expect=expected):
                outcome.release = target
                await self._checks(outcome, target)
                outcome.status = HostStatus.SUCCEEDED
                outcome.step = None
                return
        if probe is None:
            done = await self._run(outcome, "probe", commands.probe(deploy_to, target or ""))
            if done.exit_code != 0:
                raise StepFailed("probe", _why("probe", done), done)
            probe = parse_probe(done.output)
        # Re-deploying the release a host already points at (its restart failed, or we were killed before
        # it finished): what it ran before is the journal's, not `current`.
        outcome.previous = probe.rollback_target() if probe.current == target else probe.current
        outcome.release = probe.current
        if target is not None and probe.ready(target):
            outcome.status = HostStatus.UNCHANGED
            outcome.step = None
            return
        if target is None and probe.current is None:
            outcome.status = HostStatus.UNCHANGED
            return
        if target is not None and target not in probe.releases:
            await self._receive(outcome, probe, target, deploy_to)
        # Pruning rides in the switch's round trip, and only when something new arrived.
        keep = self._protected(outcome, probe, target) if outcome.transferred else None
        await self._activate(outcome, target, self.spec.kind, outcome.previous, prune=keep)
        outcome.release = target
        await self._checks(outcome, target)
        outcome.status = HostStatus.SUCCEEDED
        outcome.step = None

    async def _receive(self, outcome: HostOutcome, probe: Probe, target: str, deploy_to: str) -> None:
        """Get `target` onto the host, complete and verified: a delta, a download, or the whole tarball."""
        shipment = self.spec.shipments.get(target)
        if shipment is None:
            raise StepFailed("receive", f"release {target} is not on the host and its artifact is not "
                                        "in the store to send")
        if shipment.compression == "zstd" and not probe.zstd:
            raise StepFailed("receive", f"release {target} is compressed with zstd, which this host lacks: "
                                        "install zstd there, or set artifact.compression: gzip and build again")
        if not await self._receive_delta(outcome, probe, target, deploy_to, shipment.compression):
            if self.spec.pull is not None:
                url = await self._pull_url(outcome, shipment)
                done = await self._run(outcome, "receive", commands.receive_url(
                    url, deploy_to, target, shipment.sha256, self.config.shared, shipment.compression))
            else:
                done = await self._run(outcome, "receive",
                                       commands.receive(deploy_to, target, shipment.sha256, self.config.shared,
                                                        shipment.compression),
                                       stdin=shipment.path)
            if done.exit_code != 0:
                step = last_step(done.output) or "receive"
                raise StepFailed(step, _why(step, done), done)
            outcome.transfer = "pulled by the host" if self.spec.pull is not None else "full"
        outcome.transferred = True

    async def stage(self, outcome: HostOutcome, target: str) -> str:
        """Put `target` on a host without switching it (for migrations that run from the new release before
        any host of the region switches); the release's directory there. Its move later finds it on disk."""
        deploy_to = self._deploy_to(outcome.host)
        async with self._slot(outcome.host):
            done = await self._run(outcome, "probe", commands.probe(deploy_to, target), track=False)
            if done.exit_code != 0:
                raise StepFailed("probe", _why("probe", done), done)
            probe = parse_probe(done.output)
            if target not in probe.releases:
                await self._receive(outcome, probe, target, deploy_to)
                probe = dataclasses.replace(probe, releases=tuple(sorted({*probe.releases, target})))
        self.spec.probes[outcome.host.key] = probe
        return f"{deploy_to}/releases/{target}"

    async def _pull_url(self, outcome: HostOutcome, shipment: Shipment) -> str:
        """Where the host downloads the release from (the region's store), or the reason it cannot."""
        assert self.spec.pull is not None
        outcome.step = "receive"
        try:
            return await self.spec.pull(outcome.host.region, shipment)
        except ConveyorError as exc:
            raise StepFailed("receive", f"no URL to download release {shipment.release} from: {exc.message}") from exc

    async def _receive_delta(self, outcome: HostOutcome, probe: Probe, target: str, deploy_to: str,
                             compression: str) -> bool:
        """Send only what changed since the release the host runs; False when a full transfer is needed."""
        base = probe.current
        if self.spec.deltas is None or base is None or base not in probe.releases:
            return False
        delta = await self.spec.deltas(base, target)
        if delta is None:
            return False
        done = await self._run(outcome, "receive", commands.receive_delta(
            deploy_to, target, base, delta.sha256, self.config.shared, list(delta.deletions), compression),
            stdin=delta.path)
        if done.exit_code in (12, 13):
            return False  # the base is gone, or the host cannot hard-link: send it whole
        if done.exit_code != 0:
            step = last_step(done.output) or "receive"
            raise StepFailed(step, _why(step, done), done)
        outcome.transfer = f"delta from {base} ({delta.changed} changed, {len(delta.deletions)} removed)"
        return True

    async def _activate(self, outcome: HostOutcome, release: str | None, kind: str, previous: str | None,
                        *, track: bool = True, prune: list[str] | None = None, expect: str | None = None) -> bool:
        """Switch (journal, restart, prune); with `expect`, only if the host runs that and its journal says it
        replaced `release`: False (nothing changed) when it does not."""
        host = outcome.host
        deploy_to = self._deploy_to(host)
        role = self.config.roles[host.role]
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"), "event": "activate", "kind": kind,
            "release": release, "previous": previous, "deployment": self.spec.deployment_id,
            "user": self.spec.user, "app": self.spec.app, "environment": host.environment,
            "region": host.region, "host": host.name,
        }
        ready = {**entry, "event": "ready"}
        env = self._env(host, release, previous, kind, deploy_to)
        if expect is not None:
            env["CONVEYOR_EXPECT_CURRENT"] = expect
        done = await self._run(outcome, "switch", commands.activate(
            deploy_to, release or "", json.dumps(entry, sort_keys=True), json.dumps(ready, sort_keys=True),
            role.restart or "", env, keep=self.config.keep_releases if prune is not None else None,
            protected=prune or []), track=track)
        step = last_step(done.output) or "switch"
        if expect is not None and done.exit_code == EXPECTATION_UNMET:
            return False
        pointed = current_at_exit(done.output)  # read back by the script as it ended; None if it was killed
        if step in {"restart", "prune", "done"} if pointed is None else pointed == (release or ""):
            outcome.release = release  # `current` points at it now, whatever the restart does
            outcome.moved = outcome.moved or kind == self.spec.kind
        if done.exit_code != 0:
            raise StepFailed(step, _why(step, done), done)
        return True

    def _env(self, host: Host, release: str | None, previous: str | None, kind: str,
             deploy_to: str) -> dict[str, str]:
        return {
            "CONVEYOR_APP": self.spec.app, "CONVEYOR_ENV": host.environment, "CONVEYOR_REGION": host.region,
            "CONVEYOR_ROLE": host.role, "CONVEYOR_HOST": host.name, "CONVEYOR_RELEASE": release or "",
            "CONVEYOR_PREVIOUS_RELEASE": previous or "", "CONVEYOR_DEPLOY_TO": deploy_to,
            "CONVEYOR_KIND": kind,
            "CONVEYOR_RELEASE_PATH": f"{deploy_to}/releases/{release}" if release else "",
        }

    async def _checks(self, outcome: HostOutcome, release: str | None) -> None:
        """Verify a host after its restart: each host check of its role, with the check's retries."""
        if release is None:
            return
        host = outcome.host
        scope = Scope(app=self.spec.app, environment=host.environment, region=host.region, release=release,
                      host=host.name)
        for check in self.config.roles[host.role].checks:
            kind = kind_of(check)
            if kind.verify is None:
                continue  # a region's signal (prometheus, alerts) is watched by bakes, not asked of one host
            outcome.step = "check"
            on_host = self._on_host(outcome, release, track=True)
            measured = await kind.verify(check, self._place(scope, on_host))
            if measured.verdict is not Verdict.PASS:
                raise StepFailed("check", measured.detail, on_host.last)

    def _protected(self, outcome: HostOutcome, probe: Probe, release: str | None) -> list[str]:
        """Releases a prune must keep: the new one, what ran before, and (for a rollback) where it goes back to."""
        protected = [release or "", outcome.previous or "", probe.current or ""]
        if self.spec.kind == "rollback" and release:
            back = Probe(release, True, probe.releases, probe.journal).rollback_target()
            protected.append(back or "")
        return [p for p in protected if p]

    async def _revert(self, outcome: HostOutcome) -> None:
        """Switch a host that moved back to what it ran before, and restart it."""
        host = outcome.host
        if self._interrupted():
            outcome.note = f"not switched back: {self.stopped}"
            self.bus.emit(HostFinished(outcome=outcome))
            return
        self.bus.emit(HostReverting(host=host.name, region=host.region, to=outcome.previous))
        alone = outcome.failed
        try:
            async with self._slot(host):
                await self._activate(outcome, outcome.previous, "rollback", outcome.target, track=False)
        except (StepFailed, TransportError) as exc:
            message = exc.message if isinstance(exc, TransportError) else str(exc)
            outcome.note = f"switching back to {outcome.previous or '(nothing)'} failed: {mask(message)}"
            outcome.failed = True
            self.bus.emit(HostFinished(outcome=outcome))
            return
        outcome.moved = False
        outcome.release = outcome.previous
        outcome.status = HostStatus.ROLLED_BACK
        outcome.note = (f"switched back to {outcome.previous or '(nothing: first deploy)'}"
                        + ("" if alone else " with its region"))
        self.bus.emit(HostFinished(outcome=outcome))


def _combine(results: list[WatchResult]) -> WatchResult:
    """One verdict from watches of several scopes: any failure fails, else any undecided holds."""
    if not results:
        return WatchResult(Verdict.PASS, [], [], "nothing to watch")
    measurements = [m for r in results for m in r.measurements]
    failed = [r for r in results if r.verdict == Verdict.FAIL]
    undecided = [r for r in results if r.verdict == Verdict.INCONCLUSIVE]
    verdict = Verdict.FAIL if failed else Verdict.INCONCLUSIVE if undecided else Verdict.PASS
    reason = "; ".join(r.reason for r in (failed or undecided or results[:1]))
    return WatchResult(verdict, measurements, [c for r in failed for c in r.failed_checks], reason,
                       inconclusive_checks=[c for r in undecided for c in r.inconclusive_checks])


def _why(step: str, done: Completed) -> str:
    if done.timed_out:
        return f"{step} timed out"
    lines = tail(done.output, 1)
    return f"{step} failed with exit {done.exit_code}" + (f": {lines}" if lines else "")


async def survey(transport: Transport, hosts: list[Host], deploy_to: str, *,
                 limits_for: Callable[[Host], Limits] | None = None, concurrency: int = 64
                 ) -> dict[str, Probe | str]:
    """Probe every host concurrently: host key → its Probe, or the reason it could not be read."""
    limits = limits_for or (lambda _host: Limits())
    connections = Connections(transport, lambda host: limits(host).connect_timeout * 2 + 1)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(host: Host) -> tuple[str, Probe | str]:
        async with semaphore:
            try:
                connection = await connections.get(host)
                done = await connection.run(commands.probe(transport.deploy_path(host, deploy_to), ""),
                                            timeout=min(limits(host).command_timeout, 120.0))
            except TransportError as exc:
                return host.key, exc.message
            if done.exit_code != 0:
                return host.key, _why("probe", done)
            return host.key, parse_probe(done.output)

    try:
        return dict(await asyncio.gather(*(one(h) for h in hosts)))
    finally:
        await connections.close()
        await transport.aclose()
