"""Watching before going on: a finished wave for the environment's `bake`, a role's canaries for its
`canary_bake`. Each check watches for the whole period at its own interval; a failure halts (the wave's
regions, or the canaries' region), an undecided verdict holds it for a person. Only a deploy bakes.
"""

from __future__ import annotations

import asyncio

from conveyor.checks import kind_of
from conveyor.config.models import Check, Config
from conveyor.engine.events import (
    BakeFinished,
    BakeStarted,
    CanaryBakeFinished,
    CanaryBakeStarted,
    EventBus,
    HostFinished,
    Measured,
)
from conveyor.engine.moving import Mover
from conveyor.engine.results import HostOutcome, HostStatus, RegionOutcome, RegionStatus
from conveyor.engine.spec import PROVING_KINDS, RolloutSpec
from conveyor.engine.stopping import Stopping
from conveyor.engine.switching_back import SwitchBack
from conveyor.gates.analysis import Measurement, Scope, Verdict, WatchResult, http_fetch, watch

__all__ = ["Bakes", "combine"]


class Bakes:
    """Watches regions after they moved, and judges what the watch saw."""

    def __init__(self, config: Config, spec: RolloutSpec, bus: EventBus, mover: Mover, switch_back: SwitchBack,
                 stopping: Stopping) -> None:
        self.config = config
        self.spec = spec
        self.bus = bus
        self.mover = mover
        self.switch_back = switch_back
        self.stopping = stopping

    @property
    def resume(self) -> str:
        """How a person accepts what a held bake could not decide."""
        return "deploy --resume" if self.spec.kind == "deploy" else "the same flag change again accepts it"

    async def bake(self, wave: int, regions: list[RegionOutcome]) -> None:
        """Watch a finished wave for the bake period; a failure rolls the wave back (or halts it).
        Only a deploy bakes (see `canary_bake`)."""
        bake = self.spec.bake if self.spec.kind in PROVING_KINDS else None
        moved = [r for r in regions if any(h.status == HostStatus.SUCCEEDED for h in r.hosts)]
        if not bake or not moved:
            return  # nothing moved in this wave (a resumed deployment): nothing new to watch
        self.bus.emit(BakeStarted(wave=wave, regions=[r.region for r in moved], seconds=bake))
        watched = await self.stopping.unless_stopped(
            asyncio.gather(*(self._watch_region(r, self.spec.checks, bake, "bake") for r in moved)))
        if watched is None:  # stopped: the wave's hosts keep what they run; nothing more is judged
            for region in moved:
                self.stopping.interrupted(region)
            self.bus.emit(BakeFinished(wave=wave, verdicts=dict.fromkeys((r.region for r in moved),
                                                                             "interrupted")))
            return
        results = watched
        for region, result in zip(moved, results, strict=True):
            if result.verdict == Verdict.PASS:
                continue
            if result.verdict == Verdict.INCONCLUSIVE:
                region.status = RegionStatus.HELD
                region.message = f"bake inconclusive: {result.reason}; a person must decide ({self.resume})"
                continue
            region.message = f"bake failed: {result.reason}"
            await self.switch_back.halt(region)
        self.bus.emit(BakeFinished(wave=wave, verdicts={r.region: str(x.verdict)
                                                            for r, x in zip(moved, results, strict=True)}))

    async def canary_bake(self, region: RegionOutcome, role: str, canaries: list[HostOutcome]) -> str | None:
        """Watch the canaries for the role's `canary_bake`; a sentence if they failed or are undecided.

        Only a deploy bakes its canaries: a rollback returns to what ran before, and a region-wide signal
        still showing the release being undone must not halt it after its first host."""
        seconds = self.config.roles[role].canary_bake if self.spec.kind in PROVING_KINDS and self.spec.bake_canaries \
            else None
        moved = [o for o in canaries if o.status == HostStatus.SUCCEEDED]
        if not seconds or not moved:
            return None
        checks = [*self.config.roles[role].checks, *self.spec.checks]
        self.bus.emit(CanaryBakeStarted(region=region.region, role=role, hosts=[o.host.name for o in moved],
                      seconds=seconds))
        watched = await self.stopping.unless_stopped(
            self._watch_region(region, checks, seconds, "canary_bake", hosts=moved))
        if watched is None:  # stopped: the canaries keep what they run, and the next batch never starts
            self.bus.emit(CanaryBakeFinished(region=region.region, role=role, verdict="interrupted",
                          reason=self.stopping.reason or "stopped"))
            return None
        result = watched
        self.bus.emit(CanaryBakeFinished(region=region.region, role=role, verdict=str(result.verdict),
                      reason=result.reason))
        if result.verdict == Verdict.PASS:
            return None
        if result.verdict == Verdict.INCONCLUSIVE:
            region.status = RegionStatus.HELD
            return f"{role} canary bake inconclusive: {result.reason}; a person must decide ({self.resume})"
        for canary in moved:
            canary.failed = True
            canary.status = HostStatus.FAILED
            canary.step = "canary_bake"
            canary.error = f"canary bake failed: {result.reason}"
            self.bus.emit(HostFinished(outcome=canary))
        return f"{role} canary bake failed: {result.reason}; region halted"

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
        return combine(results)

    async def _measure_on_host(self, check: Check, scope: Scope, outcome: HostOutcome | None) -> Measurement:
        """Measure an http or command check once, on a host (or on the controller for `on: local`)."""
        on_host = None if outcome is None else self.mover.on_host(outcome, outcome.release or "", track=False)
        return await kind_of(check).measure(check, self.mover.place(scope, on_host))


def combine(results: list[WatchResult]) -> WatchResult:
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
