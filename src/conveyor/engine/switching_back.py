"""Switching back: a host that moved returns to what it ran before, and a region that failed is halted,
its moved hosts switched back together (or left as they are, with `on_failure: halt`)."""

from __future__ import annotations

import asyncio

from conveyor.engine.events import EventBus, HostFinished, HostReverting, RegionRollingBack
from conveyor.engine.moving import Mover, StepFailed
from conveyor.engine.results import HostOutcome, HostStatus, RegionOutcome, RegionStatus
from conveyor.engine.spec import RolloutSpec
from conveyor.engine.stopping import Stopping
from conveyor.errors import TransportError
from conveyor.secrets import mask

__all__ = ["SwitchBack"]


class SwitchBack:
    """Puts moved hosts back on the release they ran before."""

    def __init__(self, spec: RolloutSpec, bus: EventBus, mover: Mover, stopping: Stopping) -> None:
        self.spec = spec
        self.bus = bus
        self.mover = mover
        self.stopping = stopping

    async def revert(self, outcome: HostOutcome) -> None:
        """Switch a host that moved back to what it ran before, and restart it."""
        host = outcome.host
        if self.stopping.interrupted():
            outcome.note = f"not switched back: {self.stopping.reason}"
            self.bus.emit(HostFinished(outcome=outcome))
            return
        self.bus.emit(HostReverting(host=host.name, region=host.region, to=outcome.previous))
        alone = outcome.failed
        try:
            async with self.mover.slot(host):
                if self.spec.work is not None:
                    await self.spec.work.revert(self.mover, outcome)
                else:
                    await self.mover.activate(outcome, outcome.previous, "rollback", outcome.target, track=False)
                    outcome.release = outcome.previous
        except (StepFailed, TransportError) as exc:
            message = exc.message if isinstance(exc, TransportError) else str(exc)
            outcome.note = f"switching back to {outcome.previous or '(nothing)'} failed: {mask(message)}"
            outcome.failed = True
            self.bus.emit(HostFinished(outcome=outcome))
            return
        outcome.moved = False
        outcome.status = HostStatus.ROLLED_BACK
        outcome.note = (f"switched back to {outcome.previous or '(nothing: first deploy)'}"
                        + ("" if alone else " with its region"))
        self.bus.emit(HostFinished(outcome=outcome))

    async def halt(self, outcome: RegionOutcome) -> None:
        """End a region that failed: switch its moved hosts back (unless told not to); `rolled_back` when
        every one of them got back, `failed` otherwise."""
        if self.stopping.interrupted(outcome):
            return  # switching back is changing hosts too
        if not self.spec.revert_on_failure:
            outcome.status = RegionStatus.FAILED
            return
        moved = [o for o in outcome.hosts if o.moved]
        if moved:
            self.bus.emit(RegionRollingBack(region=outcome.region, hosts=[o.host.name for o in moved]))
        await asyncio.gather(*(self.revert(o) for o in moved))
        stuck = [o.host.name for o in outcome.hosts if o.moved]
        if stuck:
            outcome.status = RegionStatus.FAILED
            outcome.message = f"{outcome.message}; could not switch back: {', '.join(stuck)}"
        else:
            outcome.status = RegionStatus.ROLLED_BACK
