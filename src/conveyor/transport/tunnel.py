"""HTTP from a host's side over its asyncssh connection: each TCP connection httpx asks for (hostnet.py) is a
direct-tcpip channel the host's sshd opens from its side.
"""

from __future__ import annotations

import contextlib

import anyio
import anyio.abc

from conveyor.checks.client import Network
from conveyor.transport._asyncssh import asyncssh
from conveyor.transport.hostnet import network

__all__ = ["channels"]


class _Channel(anyio.abc.ByteStream):
    """One direct-tcpip channel as an anyio byte stream, which anyio's TLS can wrap."""

    def __init__(self, reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes]) -> None:
        self._reader = reader
        self._writer = writer

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self._reader.read(max_bytes)
        except (asyncssh.Error, OSError) as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        try:
            self._writer.write(item)
            await self._writer.drain()
        except (asyncssh.Error, OSError) as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc

    async def send_eof(self) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            self._writer.write_eof()

    async def aclose(self) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            self._writer.close()


def channels(conn: asyncssh.SSHClientConnection, host: str) -> Network:
    """The network of checks.client.get for GETs made from `host`'s side of `conn`: each connection a
    direct-tcpip channel the host's sshd opens."""

    async def open_channel(to: str, port: int) -> anyio.abc.ByteStream:
        try:
            reader, writer = await conn.open_connection(to, port)
        except asyncssh.Error as exc:
            raise OSError(str(getattr(exc, "reason", None) or exc or type(exc).__name__)) from exc
        return _Channel(reader, writer)

    return network(open_channel, host)
