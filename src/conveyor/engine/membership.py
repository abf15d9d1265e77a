"""A region's inventory while it moves (autoscaling): a failed host that left it (scaled in) is gone, not
failed; hosts that joined it are caught up at the region's end."""

from __future__ import annotations

import asyncio

from conveyor.engine.events import EventBus, HostFinished, HostsJoined
from conveyor.engine.moving import Mover
from conveyor.engine.plan import RegionPlan
from conveyor.engine.results import HostOutcome, HostStatus, RegionOutcome
from conveyor.engine.spec import RolloutSpec
from conveyor.engine.stopping import Stopping
from conveyor.engine.switching_back import SwitchBack
from conveyor.inventory import Host

__all__ = ["Membership"]


class Membership:
    """Reads a region's inventory again (`spec.refresh_hosts`) and acts on who left and who joined."""

    def __init__(self, spec: RolloutSpec, bus: EventBus, mover: Mover, switch_back: SwitchBack,
                 stopping: Stopping) -> None:
        self.spec = spec
        self.bus = bus
        self.mover = mover
        self.switch_back = switch_back
        self.stopping = stopping

    async def catch_up(self, plan: RegionPlan, outcome: RegionOutcome, rounds: int = 3) -> bool:
        """Move the hosts that joined the region's inventory while it moved (launched by an autoscaler);
        False when they fail beyond their role's max_failures. Bounded: a few rounds, then the region's
        pointer (written at its end) is what later hosts start from."""
        roles = {role.role: role for role in plan.roles}
        for _ in range(rounds):
            current = await self.departed(outcome)
            if current is None:
                return True
            known = {o.host.key for o in outcome.hosts}
            joined = [HostOutcome(h) for h in current if h.key not in known and h.role in roles]
            if not joined:
                return True
            self.bus.emit(HostsJoined(region=plan.region, hosts=[o.host.name for o in joined]))
            outcome.hosts.extend(joined)
            if self.stopping.interrupted(outcome):
                return False
            await asyncio.gather(*(self.mover.move(o, outcome.target) for o in joined))
            if self.stopping.interrupted(outcome):
                return False
            if self.spec.revert_on_failure:
                await asyncio.gather(*(self.switch_back.revert(o) for o in joined if o.failed and o.moved))
            if any(o.failed for o in joined):
                await self.departed(outcome)  # one that failed as it left is gone, not failed
            for name, role in roles.items():
                failures = sum(1 for o in outcome.hosts if o.host.role == name and o.failed)
                if failures > role.max_failures:
                    outcome.message = (f"{failures} {name} host(s) failed, counting hosts that joined during the "
                                       f"deployment (max_failures {role.max_failures}); region halted")
                    return False
        return True

    async def departed(self, outcome: RegionOutcome) -> list[Host] | None:
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
