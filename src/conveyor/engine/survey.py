"""A survey: every host of a list probed at once, over a connection each (what `conveyor status` shows)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from conveyor.engine import commands
from conveyor.engine.connections import Connections
from conveyor.engine.limits import Limits
from conveyor.engine.probe import Probe, parse_probe, why
from conveyor.engine.stack import ComponentProbe, host_env
from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.transport.base import Transport

__all__ = ["survey"]


async def survey(transport: Transport, hosts: list[Host], deploy_to: str, *,
                 limits_for: Callable[[Host], Limits] | None = None, concurrency: int = 64,
                 stack: Callable[[Host], Sequence[ComponentProbe]] | None = None, app: str = ""
                 ) -> dict[str, Probe | str]:
    """Probe every host concurrently: host key → its Probe, or the reason it could not be read. With `stack`,
    each host is asked about its components in the same command (see stack.py)."""
    limits = limits_for or (lambda _host: Limits())
    connections = Connections(transport, lambda host: limits(host).connect_timeout * 2 + 1)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(host: Host) -> tuple[str, Probe | str]:
        async with semaphore:
            try:
                connection = await connections.get(host)
                path = transport.deploy_path(host, deploy_to)
                components = stack(host) if stack is not None else ()
                env = host_env(app, host, None, None, "status", path) if components else None
                done = await connection.run(commands.probe(path, "", components, env),
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
