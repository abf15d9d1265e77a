"""One connection per host for a whole rollout (or survey): opened on first use, reused by every phase."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.transport.base import Connection, Transport

__all__ = ["Connections"]


class Connections:
    """One connection per host, opened on first use and closed together at the end."""

    def __init__(self, transport: Transport, timeout_for: Callable[[Host], float]) -> None:
        self.transport = transport
        self.timeout_for = timeout_for
        self._open: dict[str, Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def get(self, host: Host) -> Connection:
        """The host's connection, opening it within the connect timeout."""
        connection = self._open.get(host.key)
        if connection is not None:
            return connection  # every phase after the first: no lock to take
        lock = self._locks.setdefault(host.key, asyncio.Lock())
        async with lock:
            if host.key not in self._open:
                timeout = self.timeout_for(host)
                try:
                    self._open[host.key] = await asyncio.wait_for(self.transport.connect(host), timeout)
                except TimeoutError:
                    raise TransportError(f"{host.name}: no connection within {timeout:g}s") from None
            return self._open[host.key]

    def release(self, host: Host) -> None:
        """Close the host's connection now, in the background, when nothing more of this rollout needs it: its
        SSH server ends the session while other hosts work, not all of them together at the end. A later use
        would open another connection."""
        connection = self._open.pop(host.key, None)
        if connection is not None:
            task = asyncio.ensure_future(_close(connection))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every connection, all at once, and wait for those released earlier."""
        opened, self._open = list(self._open.values()), {}
        await asyncio.gather(*(_close(connection) for connection in opened), *self._closing)


async def _close(connection: Connection) -> None:
    with contextlib.suppress(Exception):  # closing is best effort: a failure to close is not worth reporting
        await connection.close()
