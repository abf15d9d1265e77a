"""The SSH transport a host's `ssh.client` names: asyncssh (the default) or openssh, each loaded only when a
host of the deployment uses it (asyncssh and cryptography cost a tenth of a second to import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.config.models import SSHSettings
from conveyor.inventory import Host
from conveyor.transport.base import Connection, Transport

if TYPE_CHECKING:
    from conveyor.transport.early import EarlyConnections

__all__ = ["SSHClients"]


class SSHClients:
    """Routes each host to the SSH client its merged `ssh:` settings choose."""

    def __init__(self, settings_for: Callable[[Host], SSHSettings], *,
                 early: EarlyConnections | None = None) -> None:
        self.settings_for = settings_for
        self.early = early  # TCP connections opened while the command started (asyncssh's hosts only)
        self._clients: dict[str, Transport] = {}

    def client(self, host: Host) -> Transport:
        """The transport for `host`'s client, made on first use."""
        name = self.settings_for(host).client or "asyncssh"
        found = self._clients.get(name)
        if found is None:
            if name == "openssh":
                from conveyor.transport.openssh import OpenSSHTransport

                found = OpenSSHTransport(self.settings_for)
            else:
                from conveyor.transport.ssh import SSHTransport

                found = SSHTransport(self.settings_for, early=self.early)
            self._clients[name] = found
        return found

    async def connect(self, host: Host) -> Connection:
        return await self.client(host).connect(host)

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        """On a real host, deploy_to is where it says."""
        return deploy_to

    async def aclose(self) -> None:
        """Close every client's shared state (bastions, masters, sockets)."""
        for transport in self._clients.values():
            await transport.aclose()
        self._clients.clear()
