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

    async def close(self) -> None:
        """Close every connection; a failure to close is not worth reporting."""
        for connection in self._open.values():
            with contextlib.suppress(Exception):  # closing is best effort
                await connection.close()
        self._open.clear()
