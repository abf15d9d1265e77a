"""The SSH transport (asyncssh): one connection per host, reused for every phase; bastions shared.

Host keys are checked against a known_hosts file: `strict` refuses unknown and changed keys, `accept-new`
records an unknown host's key and still refuses a changed one. A host is known when any line speaks of it
by the name it is reached by or by the address it was reached at (`[host]:port` for a port other than 22,
hashed or not), through a host key or a `@cert-authority`; a `@revoked` key is refused wherever it is also
listed. Every failure becomes a TransportError naming the host and the reason (refused, timed out,
authentication, host key).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.checks.client import host_get
from conveyor.config.models import SSHSettings
from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.transport._asyncssh import asyncssh
from conveyor.transport.base import Completed
from conveyor.transport.remote import (
    FAST_CIPHERS,
    FAST_KEX,
    STOP_TIMEOUT,
    Endpoint,
    parse_endpoint,
    refusal,
    stop_script,
    timed_out,
    told,
)

if TYPE_CHECKING:
    from conveyor.transport.early import EarlyConnections

__all__ = ["FAST_CIPHERS", "FAST_KEX", "Endpoint", "KnownHosts", "SSHConnection", "SSHTransport", "host_key_verdict",
           "parse_endpoint"]

_CHUNK = 256 * 1024


class KnownHosts(asyncssh.SSHKnownHosts):
    """A known_hosts file, matched as asyncssh matches it, except that a `@revoked` key stays revoked.

    asyncssh looks a host up as `[host]:port` (name and address alike) and, when nothing trusts a key
    there, again without the port; the second lookup forgets the revoked keys of the first. Here a key
    revoked under either form is revoked, and never trusted: neither asyncssh nor accept-new may take it.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        lines = (line.strip() for line in text.splitlines())
        self._revoked = asyncssh.SSHKnownHosts("\n".join(
            line.split(None, 1)[1] for line in lines if line.startswith("@revoked") and len(line.split()) > 1))

    def match(self, host: str, addr: str, port: int | None) -> Any:
        """The host keys, CA keys and revoked keys (and X.509 entries) for a host's name and address."""
        port = None if port == 22 else port
        found = super().match(host, addr, port)
        revoked = [*self._revoked.match(host, addr, port)[0], *self._revoked.match(host, addr, None)[0]]
        revoked += [key for key in found[2] if key not in revoked]
        return ([key for key in found[0] if key not in revoked], [key for key in found[1] if key not in revoked],
                revoked, *found[3:])


def host_key_verdict(known: KnownHosts | None, host: str, addr: str, port: int | None,
                     key: asyncssh.SSHKey | None) -> str:
    """What known_hosts says of a host showing `key` (None: no key seen yet): `trusted`, `revoked`,
    `changed` (other keys are known for it), `certified` (a certificate authority vouches for it, so a bare
    key is not enough) or `unknown` (nothing speaks of it, by name or by address)."""
    if known is None:
        return "unknown"
    trusted, authorities, revoked = known.match(host, addr, port)[:3]
    if key is not None and key in revoked:
        return "revoked"
    if key is not None and key in trusted:
        return "trusted"
    if trusted:
        return "changed"
    if authorities:
        return "certified"
    return "unknown"


class _Client(asyncssh.SSHClient):
    """Accepts an unknown host's key under accept-new, remembering it to record; says why a key was refused.

    asyncssh asks only about a key that known_hosts does not trust; the answer looks the host up by its name
    and by the address the connection reached, as asyncssh itself did, so a key known for the address (or
    vouched for by a certificate authority) is never taken for an unknown host's."""

    def __init__(self, accept_new: bool, known: KnownHosts | None) -> None:
        self.accept_new = accept_new
        self.known = known
        self.connected = False
        self.addr = ""
        self.verdict: str | None = None
        self.accepted: asyncssh.SSHKey | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.connected = True
        peer = conn.get_extra_info("peername")
        self.addr = str(peer[0]) if isinstance(peer, tuple) and peer else ""

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.verdict = host_key_verdict(self.known, host, addr, port, key)
        if self.accept_new and self.verdict == "unknown":
            self.accepted = key
            return True
        return False


class SSHConnection:
    """One open SSH connection to a host."""

    def __init__(self, host: Host, conn: asyncssh.SSHClientConnection) -> None:
        self.host = host
        self.conn = conn
        self._stopping: list[asyncio.Future[None]] = []  # stops sent to timed-out commands

    def _stop(self, said: str) -> str:
        """Stop what a timed-out host script left running (closing the channel does not: OpenSSH ignores
        signal requests), over a new channel, without waiting for it (a hung host must not hold the
        deployment up): its process group, which is the script's own shell when the session's shell exec'd
        it, else the session's shell. A few words for the message."""
        stop = stop_script(said)
        if stop is None:
            return ""

        async def send() -> None:
            with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(self.conn.run(stop, check=False), STOP_TIMEOUT)

        self._stopping.append(asyncio.ensure_future(send()))
        return "; asked the host to stop it"

    async def run(self, command: str, *, stdin: Path | None = None, timeout: float | None = None) -> Completed:
        """Run a command line; stream a file into it. The whole of it, opening the channel included, is bounded
        by `timeout`. A command that times out, or whose connection drops, still returns what the host printed
        until then (its step markers say how far a host script got, e.g. whether `current` was switched),
        followed by the reason; a host that cannot even start a command is a TransportError."""
        output = bytearray()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            process = await asyncio.wait_for(
                self.conn.create_process(command, encoding=None, stderr=asyncssh.STDOUT), timeout)
        except TimeoutError:
            raise TransportError(f"{self.host.name}: timed out: the host did not start a command within "
                                 f"{timeout:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            raise TransportError(f"{self.host.name}: cannot start a command: {_reason(exc)}") from exc

        async def feed(path: Path) -> None:
            try:
                with open(path, "rb") as source:
                    while chunk := source.read(_CHUNK):
                        process.stdin.write(chunk)
                        await process.stdin.drain()
                process.stdin.write_eof()
            except (asyncssh.Error, BrokenPipeError, ConnectionError):
                pass  # the remote side stopped reading; its exit status says why

        async def communicate() -> int | None:
            feeder = asyncio.create_task(feed(stdin)) if stdin else None
            try:
                if stdin is None:
                    process.stdin.write_eof()
                while chunk := await process.stdout.read(_CHUNK):
                    output.extend(chunk)  # kept as it comes, so a timeout still knows what was said
                if feeder:
                    await feeder
                await process.wait_closed()
            finally:
                if feeder and not feeder.done():
                    feeder.cancel()
            return process.exit_status

        try:
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            status = await asyncio.wait_for(communicate(), left)
        except TimeoutError:
            process.close()
            stopped = self._stop(output.decode("utf-8", "replace"))
            return timed_out(self.host.name, output, timeout, stopped)
        except (asyncssh.Error, OSError) as exc:
            process.close()
            return Completed(exit_code=255, output=told(output, f"{self.host.name}: connection lost: {_reason(exc)}"))
        except asyncio.CancelledError:
            process.close()
            raise
        if status is None:
            signal_name = process.exit_signal[0] if process.exit_signal else None
            if signal_name is None and self.conn.is_closed():
                return Completed(exit_code=255,
                                 output=told(output, f"{self.host.name}: connection lost during the command"))
            return Completed(exit_code=255, output=told(output, f"killed by signal {signal_name}" if signal_name else
                                                         f"{self.host.name}: the command ended without an exit "
                                                         "status"))
        return Completed(exit_code=status, output=output.decode("utf-8", "replace"))

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        """GET a URL from the host's side, over channels of this connection (works behind a bastion), by the
        same policy as on any other transport (checks/client.py)."""
        from conveyor.transport.tunnel import channels  # httpx loads when a check needs it

        return await host_get(url, timeout, follow_redirects=follow_redirects,
                              network=channels(self.conn, self.host.name))

    async def close(self) -> None:
        """Close the connection, once the stops sent to timed-out commands got there (or gave up)."""
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=STOP_TIMEOUT)
        self.conn.close()
        with contextlib.suppress(Exception):
            await self.conn.wait_closed()


class SSHTransport:
    """Connects to hosts with asyncssh, through their region's bastion when one is configured."""

    def __init__(self, settings_for: Callable[[Host], SSHSettings], *, fast_crypto: bool = True,
                 early: EarlyConnections | None = None) -> None:
        self.settings_for = settings_for
        self.fast_crypto = fast_crypto
        self.early = early
        self._bastions: dict[tuple[str, int, str | None], asyncssh.SSHClientConnection] = {}
        self._bastion_lock = asyncio.Lock()
        self._known: dict[Path, tuple[tuple[int, int], KnownHosts]] = {}
        self._keys: dict[Path, tuple[tuple[int, int], list[asyncssh.SSHKeyPair]]] = {}

    def _known_hosts(self, path: Path) -> KnownHosts | None:
        """The parsed known_hosts file, read again only when it changes (accept-new appends to it)."""
        try:
            return _when_changed(self._known, path,
                                 lambda p: KnownHosts(p.read_text(encoding="utf-8", errors="replace")))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransportError(f"known_hosts file {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise TransportError(f"known_hosts file {path}: {exc}") from exc

    def _client_keys(self, path: Path) -> list[asyncssh.SSHKeyPair] | list[str]:
        """The identity file's key (and its certificate, when one lies beside it), read once, not once per
        connection; read again when the file changes. A file asyncssh cannot read this way (a key with a
        passphrase, say) is given as its path, and connecting says why it cannot be used."""
        try:
            return _when_changed(self._keys, path, lambda p: list(asyncssh.load_keypairs([str(p)])))
        except (asyncssh.Error, ValueError, OSError):
            return [str(path)]

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        """On a real host, deploy_to is where it says."""
        return deploy_to

    def _options(self, settings: SSHSettings, label: str) -> tuple[dict[str, Any], Path, KnownHosts | None]:
        known_file = Path(os.path.expanduser(settings.known_hosts_file or "~/.ssh/known_hosts"))
        options: dict[str, Any] = {
            "connect_timeout": settings.connect_timeout,
            "keepalive_interval": 5,
            "keepalive_count_max": 3,
            "login_timeout": settings.connect_timeout,
            # ~/.ssh/config's ForwardAgent must not hand the runner's agent to every host.
            "agent_forwarding": bool(settings.agent_forwarding),
        }
        if settings.identity_file:
            key = Path(os.path.expanduser(settings.identity_file))
            if not key.is_file():
                raise TransportError(f"{label}: identity_file {key} does not exist")
            options["client_keys"] = self._client_keys(key)
        if self.fast_crypto:
            options["kex_algs"] = list(FAST_KEX)
            options["encryption_algs"] = list(FAST_CIPHERS)
        known = self._known_hosts(known_file)
        options["known_hosts"] = known if known is not None else ([], [], [])
        return options, known_file, known

    async def _open(self, endpoint: Endpoint, settings: SSHSettings, label: str,
                    tunnel: asyncssh.SSHClientConnection | None,
                    timeout: float | None = None) -> asyncssh.SSHClientConnection:
        options, known_file, known = self._options(settings, label)
        if timeout is not None:
            options["connect_timeout"] = options["login_timeout"] = max(timeout, 0.001)
        client = _Client(settings.known_hosts == "accept-new", known)
        kwargs: dict[str, Any] = {"port": endpoint.port, "client_factory": lambda: client, **options}
        if endpoint.user or settings.user:
            kwargs["username"] = endpoint.user or settings.user
        if tunnel is not None:
            kwargs["tunnel"] = tunnel
        elif self.early is not None and (sock := self.early.take(endpoint.host, endpoint.port)) is not None:
            kwargs["sock"] = sock  # opened while the command started (transport/early.py)
        try:
            conn = await asyncssh.connect(endpoint.host, **kwargs)
        except asyncssh.HostKeyNotVerifiable as exc:
            verdict = client.verdict or ("revoked" if "revoked" in str(exc) else
                                         host_key_verdict(known, endpoint.host, client.addr, endpoint.port, None))
            raise TransportError(f"{label}: refused: {_refusal(verdict, known_file, exc)}") from exc
        except asyncssh.PermissionDenied as exc:
            raise TransportError(f"{label}: authentication failed for user "
                                 f"{kwargs.get('username') or 'default'}") from exc
        except TimeoutError as exc:
            raise TransportError(f"{label}: timed out connecting to {endpoint.host}:{endpoint.port} (no SSH "
                                 f"answer within {settings.connect_timeout or timeout or 0:g}s)") from exc
        except ConnectionRefusedError as exc:
            raise TransportError(f"{label}: connection refused by {endpoint.host}:{endpoint.port}") from exc
        except socket.gaierror as exc:
            raise TransportError(f"{label}: cannot resolve {endpoint.host}: {exc.strerror}") from exc
        except (asyncssh.Error, OSError) as exc:
            if client.connected and client.verdict is None and host_key_verdict(
                    known, endpoint.host, client.addr, endpoint.port, None) == "certified":
                # Only certificates are asked for from a host a certificate authority vouches for: one that has
                # none to show ends the key exchange (the server drops the connection) before any key is seen.
                raise TransportError(f"{label}: refused: {_refusal('certified', known_file, exc)}") from exc
            raise TransportError(f"{label}: cannot connect to {endpoint.host}:{endpoint.port}: "
                                 f"{_reason(exc)}") from exc
        if client.accepted is not None:
            _record_host_key(known_file, endpoint, client.accepted)
        return conn

    async def _bastion(self, settings: SSHSettings, timeout: float) -> asyncssh.SSHClientConnection | None:
        if not settings.jump:
            return None
        endpoint = parse_endpoint(settings.jump)
        key = (endpoint.host, endpoint.port, endpoint.user or settings.user)
        label = f"bastion {settings.jump}"
        try:
            async with asyncio.timeout(timeout):  # waiting for another host's attempt counts too
                async with self._bastion_lock:
                    conn = self._bastions.get(key)
                    if conn is None or conn.is_closed():
                        conn = await self._open(endpoint, settings, label, None, timeout)
                        self._bastions[key] = conn
                    return conn
        except TimeoutError:
            raise TransportError(f"{label}: timed out connecting to {endpoint.host}:{endpoint.port} (no SSH "
                                 f"answer within {settings.connect_timeout or timeout:g}s)") from None

    async def connect(self, host: Host) -> SSHConnection:
        """Open the host's connection (through its bastion, if any), within the connect timeout.

        It gives up a little before the engine's own bound on connecting (the same `connect_timeout`), so
        that the error says what did not answer: the bastion or the host.
        """
        settings = self.settings_for(host)
        budget = settings.connect_timeout or 10.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(budget - 0.25, budget * 0.9)
        tunnel = await self._bastion(settings, deadline - loop.time())
        endpoint = Endpoint(host.address, host.port or settings.port or 22, host.user)
        conn = await self._open(endpoint, settings, host.name, tunnel, deadline - loop.time())
        return SSHConnection(host, conn)

    async def aclose(self) -> None:
        """Close the bastion connections."""
        for conn in self._bastions.values():
            conn.close()
        self._bastions.clear()


_T = TypeVar("_T")


def _when_changed(cache: dict[Path, tuple[tuple[int, int], _T]], path: Path, read: Callable[[Path], _T]) -> _T:
    """What `read` made of the file at `path`, kept in `cache` and read again only once the file changed (its
    modification time or size); the file's errors and `read`'s are the caller's."""
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    cached = cache.get(path)
    if cached is None or cached[0] != version:
        cached = (version, read(path))
        cache[path] = cached
    return cached[1]


def _record_host_key(known_file: Path, endpoint: Endpoint, key: asyncssh.SSHKey) -> None:
    name = endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"
    line = f"{name} {key.export_public_key('openssh').decode().strip()}\n"
    known_file.parent.mkdir(parents=True, exist_ok=True)
    with open(known_file, "a", encoding="utf-8") as out:
        out.write(line)


def _refusal(verdict: str, known_file: Path, exc: BaseException) -> str:
    return refusal(verdict, known_file, _reason(exc))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0]
