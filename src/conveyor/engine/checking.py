"""A host as its checks reach it: what the engine gives a check kind (conveyor.checks) to measure on a host.

Verification after a host's restart and the bakes that follow measure host checks (http, command) through
the same `OnHost`: a command runs as the host's `check` step, in the release's directory with the CONVEYOR_*
variables set; a GET goes out from the host's side of its connection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from conveyor.engine import commands
from conveyor.engine.probe import tail
from conveyor.transport.base import Completed, Connection

__all__ = ["OnHost"]

_EVERY_LINE = 1 << 30


@dataclass
class OnHost:
    """One host, for its checks (conveyor.checks.base.HostSide). `last` keeps what the host said to the last
    command, markers and all, for the host's outcome when a check fails."""

    run_step: Callable[[str, float], Awaitable[Completed]]  # run a host-script line (with its timeout) as `check`
    connection: Callable[[], Awaitable[Connection]]
    release_path: str
    env: dict[str, str]
    last: Completed | None = None

    async def run(self, command: str, *, retries: int, interval: float, timeout: float) -> Completed:
        """Run a check's command on the host (its retries there too); what it printed, without our markers."""
        done = await self.run_step(commands.check(self.release_path, command, retries, interval, self.env), timeout)
        self.last = done
        return dataclasses.replace(done, output=tail(done.output, _EVERY_LINE))

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        """GET from the host's side of its connection."""
        connection = await self.connection()
        return await connection.http_get(url, timeout, follow_redirects=follow_redirects)
