"""HTTP from a host's side over its SSH connection: httpx, with its TCP connections opened as direct-tcpip
channels of the host's asyncssh connection.

httpx and httpcore do the HTTP, redirects and TLS exactly as they do over this machine's network (checks/
client.py sets the policy); only the bytes travel another way. Each connection httpcore asks for is a channel
the host's sshd opens from its side, so `127.0.0.1` is the host's own loopback and a name is resolved there,
behind a bastion too. TLS runs here, over the channel, verified with the controller's trust store.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx
from anyio.streams.tls import TLSAttribute, TLSStream

from conveyor.checks.client import Network
from conveyor.transport._asyncssh import asyncssh

__all__ = ["ChannelTransport", "channels"]

_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, ssl.SSLError,
           asyncssh.Error, OSError)


@contextlib.contextmanager
def _translated(timeout: type[Exception], broken: type[Exception]) -> Iterator[None]:
    """Timeouts and broken channels as the httpcore errors httpx knows how to report."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc) or "timed out") from exc
    except _BROKEN as exc:
        raise broken(str(exc) or type(exc).__name__) from exc


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
        self._writer.close()


class _Stream(httpcore.AsyncNetworkStream):
    """What httpcore reads and writes: a channel, or TLS over one."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _translated(httpcore.ReadTimeout, httpcore.ReadError), anyio.fail_after(timeout):
            try:
                return await self._stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            with _translated(httpcore.WriteTimeout, httpcore.WriteError), anyio.fail_after(timeout):
                await self._stream.send(buffer)

    async def aclose(self) -> None:
        with contextlib.suppress(*_BROKEN):
            await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            with _translated(httpcore.ConnectTimeout, httpcore.ConnectError), anyio.fail_after(timeout):
                secured = await TLSStream.wrap(self._stream, hostname=server_hostname, ssl_context=ssl_context,
                                               standard_compatible=False)
        except BaseException:
            await self.aclose()
            raise
        return _Stream(secured)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._stream.extra(TLSAttribute.ssl_object, None)  # noqa: S610 - anyio's, not Django's
        return None


class _Channels(httpcore.AsyncNetworkBackend):
    """Opens httpcore's connections as channels from the host's side of its SSH connection."""

    def __init__(self, conn: asyncssh.SSHClientConnection, host: str) -> None:
        self._conn = conn
        self._host = host

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        where = f"{host}:{port} from {self._host}"
        try:
            with anyio.fail_after(timeout):
                reader, writer = await self._conn.open_connection(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection to {where}") from exc
        except (asyncssh.Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise httpcore.ConnectError(f"cannot connect to {where}: {str(reason).lower()}") from exc
        return _Stream(_Channel(reader, writer))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"{path}: unix sockets are not reached over SSH")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class ChannelTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connections opened as channels of one SSH connection."""

    def __init__(self, conn: asyncssh.SSHClientConnection, host: str, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no setting for the network its pool uses: the same pool, over the host's channels.
        self._pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context, network_backend=_Channels(conn, host))


def channels(conn: asyncssh.SSHClientConnection, host: str) -> Network:
    """The network of checks.client.get for GETs made from `host`'s side of `conn`."""
    return lambda context: ChannelTransport(conn, host, context)
