"""Stopping a rollout: a reason given from any thread, the waiting it cuts short, the regions it interrupts.

A rollout stops changing hosts when asked (a signal, a lost lease) or when a required subscriber fails (the
state store cannot record). Hosts at work finish what they do; nothing else moves or is switched back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from conveyor.engine.events import EventBus
from conveyor.engine.results import RegionOutcome, RegionStatus
from conveyor.errors import ConveyorError

__all__ = ["Stopping"]

T = TypeVar("T")


class Stopping:
    """Why a rollout stopped changing hosts, if it has; `stop` may be called from any thread."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.reason: str | None = None  # the first reason given
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None  # set by stop(): bakes end early

    def start(self) -> None:
        """Bind to the running loop, as the rollout starts: a stop from then on wakes what waits."""
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        if self.reason is not None:
            self._stopping.set()

    def stop(self, reason: str) -> None:
        """Stop changing hosts (callable from any thread); a bake under way ends at once. The first reason
        stands."""
        if self.reason is None:
            self.reason = reason
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile: nothing left to wake
                self._loop.call_soon_threadsafe(self._stopping.set)

    async def unless_stopped(self, work: Awaitable[T]) -> T | None:
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

    def interrupted(self, region: RegionOutcome | None = None) -> bool:
        """Whether hosts must stop changing: stop() was called, or a required subscriber failed (the ledger
        cannot record). Marks a `region` that has not ended interrupted."""
        if self.reason is None and self.bus.failure is not None:
            failure = self.bus.failure
            self.stop(failure.message if isinstance(failure, ConveyorError) else f"{type(failure).__name__}: {failure}")
        if self.reason is None:
            return False
        if region is not None and region.status in (RegionStatus.PENDING, RegionStatus.INTERRUPTED):
            if region.status == RegionStatus.PENDING:
                region.message = f"{region.message}; then {self.reason}" if region.message else self.reason
            region.status = RegionStatus.INTERRUPTED
        return True
