"""The rollout executor: waves in order, regions of a wave together, roles in order, batches in order.

One coroutine per host, a semaphore for concurrency, one connection per host reused for every phase.
Every host's outcome is collected; a region that fails beyond `max_failures` is switched back.

`Rollout` runs the loop and hands each idea to a part of its own:

- spec.py: what a rollout is asked to do (`RolloutSpec`, `Shipment`);
- moving.py: one host's move (probe, receive, switch, verify) within the concurrency limits;
- switching_back.py: switching moved hosts back, and halting a region that failed;
- membership.py: hosts that leave or join a region's inventory while it moves;
- bakes.py: watching a wave, or a role's canaries, before going on;
- stopping.py: a stop asked from any thread, and what it cuts short.
"""

from __future__ import annotations

import asyncio
import time

from conveyor.config.models import Config
from conveyor.engine import commands
from conveyor.engine.bakes import Bakes
from conveyor.engine.connections import Connections
from conveyor.engine.events import (
    BatchStarted,
    EventBus,
    MigrationsFinished,
    MigrationsStarted,
    RegionFinished,
    RegionStarted,
    WaveFinished,
    WaveHeld,
    WaveStarted,
)
from conveyor.engine.membership import Membership
from conveyor.engine.moving import Mover, StepFailed
from conveyor.engine.plan import Plan, RegionPlan
from conveyor.engine.probe import Probe, parse_probe
from conveyor.engine.results import HostOutcome, RegionOutcome, RegionStatus
from conveyor.engine.spec import MigrationRun, RolloutSpec, Shipment
from conveyor.engine.stopping import Stopping
from conveyor.engine.survey import survey
from conveyor.engine.switching_back import SwitchBack
from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.transport.base import Completed, Transport

__all__ = ["MigrationRun", "Rollout", "RolloutSpec", "Shipment", "survey"]


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
        self.stopping = Stopping(bus)
        self.mover = Mover(config, spec, transport, bus, self.connections, self.stopping)
        self.switch_back = SwitchBack(spec, bus, self.mover, self.stopping)
        self.membership = Membership(spec, bus, self.mover, self.switch_back, self.stopping)
        self.bakes = Bakes(config, spec, bus, self.mover, self.switch_back, self.stopping)
        self.outcomes: dict[str, RegionOutcome] = {}  # every region's outcome so far, also after a cancel

    @property
    def stopped(self) -> str | None:
        """Why this rollout stopped changing hosts (see stop), or None while it has not."""
        return self.stopping.reason

    def stop(self, reason: str) -> None:
        """Stop changing hosts (callable from any thread): hosts at work finish what they do, and nothing
        else moves or is switched back; a bake under way ends at once; regions not finished end `interrupted`.
        The first reason stands."""
        self.stopping.stop(reason)

    async def run(self, plan: Plan) -> list[RegionOutcome]:
        """Run every wave; after a failed wave, later waves are skipped. Returns every region's outcome."""
        outcomes: dict[str, RegionOutcome] = {
            region.region: RegionOutcome(region.region, self.spec.targets.get(region.region),
                                         hosts=[HostOutcome(h) for h in region.hosts])
            for region in plan.regions
        }
        self.outcomes = outcomes
        self.stopping.start()
        try:
            if self.spec.resolve_targets is not None:
                await self._resolve(plan, outcomes)
            stop = False
            for number, wave in enumerate(plan.waves, start=1):
                if self.stopping.interrupted():
                    for region in wave:
                        self.stopping.interrupted(outcomes[region.region])
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
                    await self.bakes.bake(number, [outcomes[r.region] for r in wave])
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
            async with self.mover.slot(host):
                try:
                    connection = await self.connections.get(host)
                    done = await connection.run(self.mover.probe_command(host, None),
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

    async def _region(self, plan: RegionPlan, outcome: RegionOutcome) -> None:
        target = outcome.target
        by_host = {o.host.key: o for o in outcome.hosts}
        self.bus.emit(RegionStarted(region=plan.region, release=target, hosts=len(outcome.hosts)))
        started = time.monotonic()
        if self.stopping.interrupted(outcome):
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
                if not self.stopping.interrupted(outcome):
                    await asyncio.gather(*(self.mover.move(o, target) for o in members))
                if self.stopping.interrupted(outcome):
                    self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                                  message=outcome.message, duration=time.monotonic() - started))
                    return
                if self.spec.revert_on_failure:
                    # A failed host does not keep serving the release that failed on it, whether or not it is
                    # still in the inventory.
                    await asyncio.gather(*(self.switch_back.revert(o) for o in members if o.failed and o.moved))
                if self.spec.refresh_hosts is not None and any(o.failed for o in members):
                    await self.membership.departed(outcome)  # a host scaled in mid-deployment is gone, not failed
                failures = sum(1 for o in role_outcomes if o.failed)
                if batch.canary and failures <= role.max_failures:
                    verdict = await self.bakes.canary_bake(outcome, role.role, members)
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
                    await self.switch_back.halt(outcome)
                    self.bus.emit(RegionFinished(region=plan.region, status=str(outcome.status),
                                  message=outcome.message, duration=time.monotonic() - started))
                    return
        if self.spec.refresh_hosts is not None and not await self.membership.catch_up(plan, outcome):
            await self.switch_back.halt(outcome)
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
                path = await self.mover.stage(host, target)
            except StepFailed as exc:
                return f"cannot put {target} on {host.host.name} to run the migrations: {exc}"
            except TransportError as exc:
                return f"cannot reach {host.host.name} to run the migrations: {exc.message}"
            chosen = host

            async def run(command: str, env: dict[str, str], timeout: float) -> Completed:
                try:
                    return await self.mover.run(chosen, "migrate", commands.check(path, command, 0, 0, env),
                                                timeout=timeout, track=False)
                except TransportError as exc:
                    return Completed(exit_code=255, output=f"{chosen.host.name}: {exc.message}")

        self.bus.emit(MigrationsStarted(region=plan.region, release=target))
        problem = await self.spec.migrate(plan.region, run)
        self.bus.emit(MigrationsFinished(region=plan.region, release=target, problem=problem))
        return problem
