"""The transport interface: open a connection to a host, run a command line on it, close it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from conveyor.inventory import Host


@dataclass(frozen=True)
class Completed:
    """What a command did on a host: its exit code and its combined output."""

    exit_code: int
    output: str
    timed_out: bool = False


class Connection(Protocol):
    """One open connection to one host, reused for every phase of a deployment."""

    async def run(self, command: str, *, stdin: Path | None = None, timeout: float | None = None) -> Completed:
        """Run a shell command line; stream `stdin`'s file into it; never raise for a non-zero exit."""
        ...

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        """GET a URL from the host's side by checks/client.py's policy (redirects, body limit, https, timeout);
        (status, body). Raise TransportError if nothing answers."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class Transport(Protocol):
    """How the engine reaches hosts. `local` and `ssh` implement it; tests inject their own."""

    async def connect(self, host: Host) -> Connection:
        """Open a connection, or raise TransportError naming the host and the reason."""
        ...

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        """Where `deploy_to` is for this host (a local host puts it inside its directory)."""
        ...

    async def aclose(self) -> None:
        """Close anything shared between connections."""
        ...
