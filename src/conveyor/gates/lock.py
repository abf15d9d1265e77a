"""The lock gate: one deployment (or a person's `conveyor lock`) at a time holds an environment."""

from __future__ import annotations

from conveyor.errors import LockHeld
from conveyor.gates.base import GateContext, GateVerdict

NAME = "lock"


def check(context: GateContext) -> GateVerdict | None:
    """Closed while someone holds the environment's lock. Not judged when the operation takes the lock
    next (`lock_follows`): taking it is atomic and refuses a held lock itself, so asking first only races."""
    holder = context.ledger.lock_holder(context.environment)
    if holder is None:
        return GateVerdict(NAME, open=True, detail="not locked")
    if context.lock_follows:
        return None
    return GateVerdict(NAME, open=False, detail=holder.describe(), refusal=LockHeld(holder.describe()))
