"""HTTP from a host's side: httpx, with its TCP connections opened from the host by whatever reaches it.

httpx and httpcore do the HTTP, redirects and TLS exactly as they do over this machine's network (checks/
client.py sets the policy); only the bytes travel another way: each connection httpcore asks for is a byte
stream an opener makes from the host's side (an asyncssh direct-tcpip channel in tunnel.py, an OpenSSH
`ssh -W` in openssh.py), so `127.0.0.1` is the host's own loopback and a name is resolved there, behind a
bastion too. TLS runs here, over the stream, verified with the controller's trust store.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx
from anyio.streams.tls import TLSAttribute, TLSStream

from conveyor.checks.client import Network

__all__ = ["Opener", "StreamTransport", "network"]

Opener = Callable[[str, int], Awaitable[anyio.abc.ByteStream]]
"""Opens a TCP connection to (host, port) from the host's side as a byte stream; raises OSError (its text
the reason) when nothing answers. Streams raise anyio's BrokenResourceError when they break."""

_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, ssl.SSLError, OSError)


@contextlib.contextmanager
def _translated(timeout: type[Exception], broken: type[Exception]) -> Iterator[None]:
    """Timeouts and broken streams as the httpcore errors httpx knows how to report."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc) or "timed out") from exc
    except _BROKEN as exc:
        raise broken(str(exc) or type(exc).__name__) from exc


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


class _Backend(httpcore.AsyncNetworkBackend):
    """Opens httpcore's connections from the host's side, through an opener."""

    def __init__(self, opener: Opener, host: str) -> None:
        self._opener = opener
        self._host = host

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        where = f"{host}:{port} from {self._host}"
        try:
            with anyio.fail_after(timeout):
                stream = await self._opener(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection to {where}") from exc
        except OSError as exc:
            reason = str(exc) or type(exc).__name__
            raise httpcore.ConnectError(f"cannot connect to {where}: {reason.lower()}") from exc
        return _Stream(stream)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"{path}: unix sockets are not reached over SSH")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class StreamTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connections opened from a host's side."""

    def __init__(self, opener: Opener, host: str, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no setting for the network its pool uses: the same pool, over the host's streams.
        self._pool = httpcore.AsyncConnectionPool(ssl_context=ssl_context, network_backend=_Backend(opener, host))


def network(opener: Opener, host: str) -> Network:
    """The network of checks.client.get for GETs made from `host`'s side, through `opener`."""
    return lambda context: StreamTransport(opener, host, context)
