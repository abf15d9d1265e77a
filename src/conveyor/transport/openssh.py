"""The SSH transport through the OpenSSH client (`ssh.client: openssh`): one multiplexed master per host.

Measured against the default (asyncssh, in-process) on a fleet of sshd hosts on this machine's two cores, it
costs more controller CPU per host (its master's handshake in a process of its own, and one `ssh` process
per command: ~25-35 ms a host against asyncssh's ~7), so it is the choice where asyncssh cannot go: where
the runner's own OpenSSH setup (agent, ProxyCommand, FIDO keys, GSSAPI) is what reaches the hosts.

`connect` starts a ControlMaster for the host (`ssh -N`, backgrounded by ControlPersist once it has
authenticated, so the parent's exit status says whether it could); every command after that is an `ssh -S`
session over it, a process of its own. What this buys over asyncssh is the floor's own costs: the key
exchange and the encryption run in OpenSSH's C on every core instead of in this Python process, a release
is streamed into `ssh` straight from its file, and neither asyncssh nor cryptography is imported.

The `ssh:` settings become an ssh_config file of Conveyor's own (`-F`), written once per distinct settings,
so ProxyJump hosts see them too; the user's own ~/.ssh/config is read after them, for what they leave unset.
Host keys are OpenSSH's to check (`StrictHostKeyChecking yes` or `accept-new` against the configured
known_hosts file, nothing else); its refusals are put in the same words as the asyncssh transport's.

A command without a file to stream is sent on the session's stdin to the host's `sh`, never in the local
argv, so nothing of it shows in this machine's process list. A master left behind by a controller that died
ends by itself after ControlPersist's idle time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import re
import shlex
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.abc

from conveyor.checks.client import host_get
from conveyor.config.models import SSHSettings
from conveyor.errors import TransportError
from conveyor.inventory import Host
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

__all__ = ["OpenSSHConnection", "OpenSSHTransport"]

IDLE = 120  # seconds a master outlives its last session (a controller that died leaves nothing for longer)
_CHUNK = 256 * 1024
_ARGV_LIMIT = 96 * 1024  # Linux refuses one argument over 128 KiB
_SOCKET_PATH = 100  # a unix socket's path must fit sun_path (108 bytes)

# OpenSSH's words for what went wrong, in the order they are looked for.
_REFUSALS = (
    (re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed"), "changed"),
    (re.compile(r"revoked", re.IGNORECASE), "revoked"),
    (re.compile(r"No \S+ host key is known for|Host key verification failed"), "unknown"),
)


_OPEN_FAILED = re.compile(r"open failed: (.*)")
_FOUND = re.compile(r"^# Host .* found: line \d+ ?(\S*)$")


def _conf(value: str, what: str) -> str:
    """`value` as one ssh_config argument: quoted, with `%` kept literal; a value that cannot be written
    there (a newline, a double quote) is refused rather than let it add options of its own."""
    if any(ch in value for ch in '\n\r"\0'):
        raise TransportError(f"ssh.{what}: {value!r} cannot be given to the OpenSSH client (a newline or "
                             "a double quote)")
    return '"' + value.replace("%", "%%") + '"'


class _Settings:
    """One distinct `ssh:` settings as an ssh_config file, and what its commands are started with."""

    def __init__(self, ssh: str, path: Path, settings: SSHSettings, fast_crypto: bool, label: str) -> None:
        self.settings = settings
        self.known_file = Path(os.path.expanduser(settings.known_hosts_file or "~/.ssh/known_hosts"))
        timeout = max(1, math.ceil(settings.connect_timeout or 10.0))
        lines = [
            "# written by conveyor for one deployment (transport/openssh.py); removed when it ends",
            "Host *",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "  RequestTTY no",
            f"  StrictHostKeyChecking {'accept-new' if settings.known_hosts == 'accept-new' else 'yes'}",
            f"  UserKnownHostsFile {_conf(str(self.known_file), 'known_hosts_file')}",
            "  GlobalKnownHostsFile /dev/null",
            "  HashKnownHosts no",
            "  CheckHostIP no",  # _alias looks the address up instead
            "  UpdateHostKeys no",
            f"  ConnectTimeout {timeout}",
            "  ConnectionAttempts 1",
            "  ServerAliveInterval 5",
            "  ServerAliveCountMax 3",
            # ~/.ssh/config's ForwardAgent must not hand the runner's agent to every host.
            f"  ForwardAgent {'yes' if settings.agent_forwarding else 'no'}",
            "  ForwardX11 no",
            "  PermitLocalCommand no",
        ]
        if settings.identity_file:
            key = Path(os.path.expanduser(settings.identity_file))
            if not key.is_file():
                raise TransportError(f"{label}: identity_file {key} does not exist")
            lines += [f"  IdentityFile {_conf(str(key), 'identity_file')}", "  IdentitiesOnly yes"]
        if settings.user:
            lines.append(f"  User {_conf(settings.user, 'user')}")
        if fast_crypto:
            lines += [f"  KexAlgorithms {','.join(FAST_KEX)}", f"  Ciphers {','.join(FAST_CIPHERS)}"]
        lines += ["", "Match all", "  Include ~/.ssh/config", ""]
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
            out.write("\n".join(lines))
        self.argv = [ssh, "-F", str(path)]


class OpenSSHConnection:
    """One host's master connection; each command is a session over it."""

    def __init__(self, transport: OpenSSHTransport, host: Host, config: _Settings, target: list[str],
                 control: Path) -> None:
        self.transport = transport
        self.host = host
        self.target = target  # the options and destination every session of this host is started with
        self.control = control
        # what every session starts with, settled once at connect (not the settings merged again per command)
        self._base = [*config.argv, "-S", str(control), "-o", "ControlMaster=no"]
        self._stopping: list[asyncio.Future[None]] = []

    def _session(self, options: list[str], remote: list[str]) -> list[str]:
        return [*self._base, *options, *self.target, *remote]

    async def _spawn(self, argv: list[str], stdin: BinaryIO | None) -> _Session:
        try:
            return await _Session.start(argv, stdin)
        except OSError as exc:
            raise TransportError(f"{self.host.name}: cannot start ssh: {exc.strerror or exc}") from exc

    def _stop(self, said: str) -> str:
        """Stop what a timed-out host script left running, over a new session, without waiting for it."""
        stop = stop_script(said)
        if stop is None:
            return ""

        async def send() -> None:
            with contextlib.suppress(TimeoutError, OSError, TransportError):
                await asyncio.wait_for(self._run(stop, None, STOP_TIMEOUT), STOP_TIMEOUT)

        self._stopping.append(asyncio.ensure_future(send()))
        return "; asked the host to stop it"

    async def run(self, command: str, *, stdin: Path | None = None, timeout: float | None = None) -> Completed:
        """Run a command line (streaming a file into it), bounded by `timeout`. A command that times out still
        returns what the host printed until then, followed by the reason; exit status 255 is OpenSSH's for
        a lost connection, with its words at the end of the output."""
        return await self._run(command, stdin, timeout)

    async def _run(self, command: str, stdin: Path | None, timeout: float | None) -> Completed:
        source: BinaryIO | None = None
        if stdin is None:
            # The command goes to the host's sh on stdin: out of this machine's process list, and of any
            # limit on an argument's length. sh reads all of it before running it (one complete command).
            argv, feed = self._session([], ["exec sh"]), (command + "\n").encode()
        else:
            if len(command) > _ARGV_LIMIT:
                raise TransportError(f"{self.host.name}: a command of {len(command)} bytes is too long to "
                                     "start with a file to stream")
            argv, feed = self._session([], [command]), None
            try:
                source = open(stdin, "rb")  # noqa: SIM115 - handed to ssh, closed below
            except OSError as exc:
                raise TransportError(f"{self.host.name}: cannot read {stdin}: {exc.strerror}") from exc
        output = bytearray()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            session = await self._spawn(argv, source)
        finally:
            if source is not None:
                source.close()

        async def communicate() -> int:
            if feed is not None:
                with contextlib.suppress(anyio.BrokenResourceError):  # the exit status says why
                    await session.send(feed)
                session.send_eof()
            while chunk := await session.reader.read(_CHUNK):
                output.extend(chunk)  # kept as it comes, so a timeout still knows what was said
            return await session.process.wait()

        try:
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            status = await asyncio.wait_for(communicate(), left)
        except TimeoutError:
            await session.end()
            stopped = self._stop(output.decode("utf-8", "replace"))
            return timed_out(self.host.name, output, timeout, stopped)
        except BaseException:
            await session.end()
            raise
        session.close()
        if status == 255 and not await self.transport.master_alive(self):
            lost = f"{self.host.name}: connection lost during the command"
            return Completed(exit_code=255, output=told(output, lost))
        if status < 0:
            return Completed(exit_code=255, output=told(output, f"killed by signal {signal.Signals(-status).name}"))
        return Completed(exit_code=status, output=output.decode("utf-8", "replace"))

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        """GET a URL from the host's side: each TCP connection an `ssh -W` session of this connection."""
        from conveyor.transport.hostnet import network  # httpx loads when a check needs it

        async def open_stream(to: str, port: int) -> anyio.abc.ByteStream:
            where = f"[{to}]:{port}" if ":" in to else f"{to}:{port}"
            argv = self._session(["-W", where], [])
            try:
                return _ProcessStream(await _Session.start(argv, None, data=True))
            except OSError as exc:
                raise OSError(f"cannot start ssh: {exc.strerror or exc}") from exc

        return await host_get(url, timeout, follow_redirects=follow_redirects,
                              network=network(open_stream, self.host.name))

    async def close(self) -> None:
        """End the master, once the stops sent to timed-out commands got there (or gave up)."""
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=STOP_TIMEOUT)
        await self.transport.end_master(self)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Kill a local ssh process we started, and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()


class _Session:
    """An ssh client process and our ends of its stdin and stdout, which are pipes of our own, not asyncio's:
    OpenSSH hands a session client's descriptors to its master, which keeps them open after the client is
    gone (as long as a stalled host keeps the channel open), and asyncio would wait for them to close before
    it reports the client's exit. Ended, a session closes our ends and kills the client: it has nothing to
    save, and it waits for its master's word before it acts on SIGTERM."""

    def __init__(self, process: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 pipes: list[asyncio.BaseTransport], writer: asyncio.StreamWriter | None,
                 errors: BinaryIO | None) -> None:
        self.process = process
        self.reader = reader
        self._pipes = pipes
        self._writer = writer
        self.errors = errors

    @classmethod
    async def start(cls, argv: list[str], stdin: BinaryIO | None, *, data: bool = False) -> _Session:
        """Start `argv` with its stdout and stderr into one pipe (`data`: stdout alone, the stream's bytes;
        stderr to a file); its stdin `stdin`'s file, or a pipe of ours."""
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe() if stdin is None else (-1, -1)
        errors = tempfile.TemporaryFile() if data else None  # noqa: SIM115 - the session's, closed with it
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=stdin if stdin is not None else in_r, stdout=out_w,
                stderr=errors if errors is not None else out_w,
                start_new_session=True)  # Ctrl-C is the controller's to handle, not every ssh's
        except BaseException:
            for fd in (out_r, in_w):
                if fd >= 0:
                    os.close(fd)
            if errors is not None:
                errors.close()
            raise
        finally:
            for fd in (out_w, in_r):
                if fd >= 0:
                    os.close(fd)
        reader = asyncio.StreamReader(limit=_CHUNK)
        pipes: list[asyncio.BaseTransport] = []
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(out_r, "rb", 0))
        pipes.append(transport)
        writer = None
        if in_w >= 0:
            out, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                          os.fdopen(in_w, "wb", 0))
            pipes.append(out)
            writer = asyncio.StreamWriter(out, protocol, None, loop)
        return cls(process, reader, pipes, writer, errors)

    async def send(self, data: bytes) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (BrokenPipeError, ConnectionError) as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc

    def send_eof(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.close()
        if self.errors is not None:
            self.errors.close()

    async def end(self) -> None:
        self.close()
        await _end(self.process)


class _ProcessStream(anyio.abc.ByteStream):
    """An `ssh -W` session as an anyio byte stream (anyio's TLS can wrap it). When it ends before saying
    anything, that is the error (OpenSSH could not open the connection from the host's side)."""

    def __init__(self, session: _Session) -> None:
        self._session = session
        self._said = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._session.reader.read(max_bytes)
        if data:
            self._said = True
            return data
        if not self._said:
            await _end(self._session.process)
            said = b""
            if self._session.errors is not None:
                self._session.errors.seek(0)
                said = self._session.errors.read(8192)
            self._session.close()
            text = said.decode("utf-8", "replace")
            found = _OPEN_FAILED.search(text)
            if found:  # OpenSSH's reason, when it has one (a session without its master)
                reason = found.group(1).strip()
            elif "refused by peer" in text:  # through the master: sshd refused the channel, reason untold
                reason = "the host's sshd refused to open it (nothing listens there, or it cannot be reached)"
            else:
                reason = "the host could not open the connection"
            raise anyio.BrokenResourceError(reason) from OSError(reason)
        raise anyio.EndOfStream

    async def send(self, item: bytes) -> None:
        await self._session.send(item)

    async def send_eof(self) -> None:
        self._session.send_eof()

    async def aclose(self) -> None:
        await self._session.end()


class OpenSSHTransport:
    """Connects to hosts with the OpenSSH client, through their region's bastion when one is configured (a
    master of its own, shared by the hosts behind it)."""

    def __init__(self, settings_for: Callable[[Host], SSHSettings], *, fast_crypto: bool = True,
                 ssh: str | None = None) -> None:
        self.settings_for = settings_for
        self.fast_crypto = fast_crypto
        self._ssh = ssh
        self._dir: Path | None = None
        self._configs: dict[str, _Settings] = {}
        self._masters: dict[Path, tuple[list[str], list[str]]] = {}  # control socket → (ssh -F … -S …, target)
        self._bastions: dict[tuple[str, int, str | None, str], tuple[Path, str]] = {}
        self._bastion_lock = asyncio.Lock()
        self._count = 0
        self._keygen: str | None = None

    def _work(self) -> Path:
        if self._dir is None:
            base = tempfile.gettempdir()
            if len(base) > _SOCKET_PATH - 24:
                base = "/tmp"  # only for the sockets' short paths; the directory is private (0700)
            self._dir = Path(tempfile.mkdtemp(prefix="conveyor-ssh-", dir=base))
        return self._dir

    def _binary(self) -> str:
        if self._ssh is None:
            found = shutil.which("ssh")
            if found is None:
                raise TransportError("ssh.client is openssh, but the OpenSSH client (`ssh`) is not installed "
                                     "(install openssh-client, or set ssh.client: asyncssh)")
            self._ssh = found
        return self._ssh

    def _settings(self, settings: SSHSettings, label: str) -> _Settings:
        key = settings.model_dump_json()
        found = self._configs.get(key)
        if found is None:
            path = self._work() / f"config-{len(self._configs)}"
            found = self._configs[key] = _Settings(self._binary(), path, settings, self.fast_crypto, label)
        return found

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        """On a real host, deploy_to is where it says."""
        return deploy_to

    def _socket(self) -> Path:
        self._count += 1
        return self._work() / f"m{self._count}"

    @staticmethod
    def _target(endpoint: Endpoint, settings: SSHSettings) -> list[str]:
        user = endpoint.user or settings.user
        return [*(["-l", user] if user else []), "-p", str(endpoint.port), "--", endpoint.host]

    async def _master(self, label: str, config: _Settings, target: list[str], proxy: list[str],
                      timeout: float, certified: bool = False) -> Path:
        """Start a ControlMaster for `target`; its control socket, once it has authenticated."""
        control = self._socket()
        errors = self._work() / f"{control.name}.err"
        argv = [*config.argv, *proxy, "-S", str(control), "-o", "ControlMaster=yes",
                "-o", f"ControlPersist={IDLE}", "-N", *target]
        with open(errors, "w+b") as stderr:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
                    start_new_session=True)
            except OSError as exc:
                raise TransportError(f"{label}: cannot start ssh: {exc.strerror or exc}") from exc
            try:
                status = await asyncio.wait_for(process.wait(), max(timeout, 0.001))
            except (TimeoutError, asyncio.CancelledError) as exc:
                await _end(process)
                with contextlib.suppress(OSError):
                    control.unlink()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                host, port = target[-1], target[target.index("-p") + 1]
                raise TransportError(f"{label}: timed out connecting to {host}:{port} (no SSH answer within "
                                     f"{config.settings.connect_timeout or timeout:g}s)") from None
            stderr.seek(0)
            said = stderr.read(64 * 1024).decode("utf-8", "replace")
        errors.unlink(missing_ok=True)
        if status != 0:
            raise TransportError(f"{label}: {self._why(said, target, config, certified)}")
        self._masters[control] = ([*config.argv, "-S", str(control)], target)
        return control

    @staticmethod
    def _why(said: str, target: list[str], config: _Settings, certified: bool) -> str:
        """OpenSSH's complaint about a connection, in the asyncssh transport's words."""
        host, port = target[-1], target[target.index("-p") + 1]
        lines = [line.strip() for line in said.splitlines() if line.strip() and not line.startswith("@@@")]
        last = lines[-1] if lines else "ssh failed without saying why"
        for pattern, verdict in _REFUSALS:
            if pattern.search(said):
                said_of = "certified" if certified and verdict == "unknown" else verdict
                return f"refused: {refusal(said_of, config.known_file, last)}"
        if "Permission denied" in said or "Too many authentication failures" in said:
            user = target[target.index("-l") + 1] if "-l" in target else "default"
            return f"authentication failed for user {user}"
        if "Connection refused" in said:
            return f"connection refused by {host}:{port}"
        if "timed out" in said.lower():
            return (f"timed out connecting to {host}:{port} (no SSH answer within "
                    f"{config.settings.connect_timeout or 10:g}s)")
        if "Could not resolve hostname" in said:
            return f"cannot resolve {host}: {last.rpartition(':')[2].strip()}"
        return f"cannot connect to {host}:{port}: {last}"

    async def _bastion(self, settings: SSHSettings, config: _Settings, timeout: float) -> list[str]:
        """The ProxyCommand options that reach a host through its bastion's own master ([] without one)."""
        if not settings.jump:
            return []
        endpoint = parse_endpoint(settings.jump)
        key = (endpoint.host, endpoint.port, endpoint.user or settings.user, settings.model_dump_json())
        label = f"bastion {settings.jump}"
        try:
            async with asyncio.timeout(timeout):  # waiting for another host's attempt counts too
                async with self._bastion_lock:
                    found = self._bastions.get(key)
                    if found is None or not self._alive(found[0]):
                        target = self._target(endpoint, settings)
                        control = await self._master(label, config, target=target, proxy=[], timeout=timeout)
                        words = [*config.argv, "-S", str(control), "-o", "ControlMaster=no", "-W", "[%h]:%p",
                                 *target]
                        found = (control, " ".join(shlex.quote(word).replace("%", "%%")
                                                   if word != "[%h]:%p" else word for word in words))
                        self._bastions[key] = found
        except TimeoutError:
            raise TransportError(f"{label}: timed out connecting to {endpoint.host}:{endpoint.port} (no SSH "
                                 f"answer within {settings.connect_timeout or timeout:g}s)") from None
        return ["-o", f"ProxyCommand={found[1]}"]

    @staticmethod
    def _alive(control: Path) -> bool:
        return control.is_socket()

    async def master_alive(self, conn: OpenSSHConnection) -> bool:
        """Whether a host's master still answers (asked after a session ended with 255: OpenSSH's status for
        a connection that went away, or the command's own)."""
        argv = self._control(conn.control, "check")
        if argv is None:
            return False
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            return await asyncio.wait_for(process.wait(), STOP_TIMEOUT) == 0
        except TimeoutError:
            await _end(process)
            return False

    async def connect(self, host: Host) -> OpenSSHConnection:
        """Start the host's master (through its bastion's, if any), within the connect timeout; like the
        asyncssh transport, it gives up a little before the engine's own bound so the error says what did
        not answer."""
        settings = self.settings_for(host)
        config = self._settings(settings, host.name)
        budget = settings.connect_timeout or 10.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(budget - 0.25, budget * 0.9)
        proxy = await self._bastion(settings, config, deadline - loop.time())
        endpoint = Endpoint(host.address, host.port or settings.port or 22, host.user)
        target = self._target(endpoint, settings)
        alias, kinds = await self._checked_as(endpoint, config)
        options = [*proxy, *(["-o", f"HostKeyAlias={alias}"] if alias else [])]
        # Only a certificate that authority signed will do for a host a certificate authority vouches for
        # (and no bare key is known): never a key accept-new would take.
        certified = kinds is not None and "CA" in kinds and "key" not in kinds
        if certified:
            options += ["-o", "StrictHostKeyChecking=yes"]
        control = await self._master(host.name, config, target=target, proxy=options,
                                     timeout=deadline - loop.time(), certified=certified)
        return OpenSSHConnection(self, host, config, target, control)

    async def _lookup(self, name: str, config: _Settings) -> frozenset[str] | None:
        """What the known_hosts file holds for `name` (hashed or not, by pattern too): the kinds of line that
        speak of it (`key`, `CA`, `REVOKED`), None when none does. ssh-keygen -F matches as ssh does."""
        if self._keygen is None:  # found once, beside ssh first
            self._keygen = shutil.which("ssh-keygen", path=os.pathsep.join([str(Path(config.argv[0]).parent),
                                                                            os.environ.get("PATH", "")])) or ""
        keygen = self._keygen
        if not keygen or not config.known_file.is_file():
            return None
        process = await asyncio.create_subprocess_exec(
            keygen, "-F", name, "-f", str(config.known_file), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            said, _ = await asyncio.wait_for(process.communicate(), STOP_TIMEOUT)
        except TimeoutError:
            await _end(process)
            return None
        if process.returncode != 0:
            return None
        kinds = {found.group(1) or "key" for line in said.decode("utf-8", "replace").splitlines()
                 if (found := _FOUND.match(line)) is not None}
        return frozenset(kinds) or None

    async def _checked_as(self, endpoint: Endpoint, config: _Settings) -> tuple[str | None, frozenset[str] | None]:
        """Under which name OpenSSH is to check the host's key (None: the name it is reached by), and what
        known_hosts holds there. A host is known when any line speaks of it by the name it is reached by or
        by the address it resolves to (`[addr]:port`, else the bare address), as the asyncssh transport has
        it; OpenSSH alone would look at the name only, and accept-new would take any key for it."""
        try:
            ipaddress.ip_address(endpoint.host)
            literal = True
        except ValueError:
            literal = False
        if literal and config.settings.known_hosts != "accept-new":
            return None, None  # the default: OpenSSH checks the address it was given, nothing to ask
        named = endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"
        kinds = await self._lookup(named, config)
        if kinds is not None or literal:
            return None, kinds
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM),
                                           config.settings.connect_timeout or 10.0)
        except (OSError, TimeoutError):
            return None, None  # OpenSSH says why it cannot reach it
        for address in dict.fromkeys(str(info[4][0]) for info in found):
            for form in ([f"[{address}]:{endpoint.port}"] if endpoint.port != 22 else []) + [address]:
                kinds = await self._lookup(form, config)
                if kinds is not None:
                    return form, kinds
        return None, None

    async def end_master(self, conn: OpenSSHConnection) -> None:
        await self._exit(conn.control)

    def _control(self, control: Path, request: str) -> list[str] | None:
        """`ssh -O REQUEST` for a master of ours that is still there (None: it is not)."""
        found = self._masters.get(control)
        if found is None or not self._alive(control):
            return None
        prefix, target = found
        return [*prefix, "-O", request, *target]

    async def _exit(self, control: Path) -> None:
        argv = self._control(control, "exit")
        self._masters.pop(control, None)
        if argv is None:
            return
        with contextlib.suppress(OSError):
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                await _end(process)

    async def aclose(self) -> None:
        """End every master still open (the bastions' last) and remove the sockets and config files."""
        for control in [c for c in self._masters if all(c != b[0] for b in self._bastions.values())]:
            await self._exit(control)
        for control, _ in self._bastions.values():
            await self._exit(control)
        self._bastions.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._configs.clear()
