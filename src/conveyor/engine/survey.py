"""A survey: every host of a list probed at once, over a connection each (what `conveyor status` shows)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conveyor.engine import commands
from conveyor.engine.connections import Connections
from conveyor.engine.limits import Limits
from conveyor.engine.probe import Probe, parse_probe, why
from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.transport.base import Transport

__all__ = ["survey"]


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
                return host.key, why("probe", done)
            return host.key, parse_probe(done.output)

    try:
        return dict(await asyncio.gather(*(one(h) for h in hosts)))
    finally:
        await connections.close()
        await transport.aclose()
