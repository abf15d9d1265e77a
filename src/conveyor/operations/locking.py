"""lock and unlock: hold an environment by hand, and let it go."""

from __future__ import annotations

from conveyor.errors import UsageError
from conveyor.operations.workspace import Workspace
from conveyor.state.store import LockInfo


def lock(ws: Workspace, environment: str, reason: str) -> None:
    """Hold an environment until someone unlocks it; LockHeld if someone else holds it."""
    ws.environment(environment)
    if not reason.strip():
        raise UsageError("--reason must say why the environment is held")
    ws.store.lock(environment, owner=ws.user, reason=reason)
    ws.store.add_event("lock", ws.user, environment=environment, reason=reason)


def unlock(ws: Workspace, environment: str, *, force: bool = False) -> LockInfo | None:
    """Let an environment go. A live deployment's lock is only removed with `force`."""
    ws.environment(environment)
    ws.store.reap()
    holder = ws.store.lock_holder(environment)
    if holder is not None and holder.pid is not None and not force:
        raise UsageError(f"{holder.describe()}; it is a running deployment: wait for it, or use --force")
    released = ws.store.unlock(environment)
    if released is not None:
        ws.store.add_event("unlock", ws.user, environment=environment, previous=released.describe(),
                           forced=force)
    return released
