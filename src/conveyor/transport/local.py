"""The local transport: a host is a directory, and host scripts run with `sh` on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from conveyor.checks.client import host_get
from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.transport.base import Completed

_CHUNK = 1 << 20


class LocalConnection:
    """Runs command lines with `sh -c` in the host's directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def run(self, command: str, *, stdin: Path | None = None, timeout: float | None = None) -> Completed:
        """Run a command line in a new process group, so a timeout can stop everything it started."""
        try:
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", command,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        except OSError as exc:  # the host's directory is gone: like a host that no longer answers
            raise TransportError(f"{self.root}: {exc.strerror or exc}") from exc

        async def feed(source_path: Path) -> None:
            assert proc.stdin is not None
            try:
                with open(source_path, "rb") as source:
                    while chunk := source.read(_CHUNK):
                        proc.stdin.write(chunk)
                        await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the script stopped reading; its exit code says why
            finally:
                proc.stdin.close()

        collected = bytearray()

        async def communicate() -> None:
            assert proc.stdout is not None
            feeder = asyncio.create_task(feed(stdin)) if stdin else None
            while chunk := await proc.stdout.read(65536):
                collected.extend(chunk)
            if feeder:
                await feeder
            await proc.wait()

        try:
            await asyncio.wait_for(communicate(), timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            # Keep what the host printed: it says which step it reached (a switch may already be done).
            output = collected.decode("utf-8", "replace") + f"\ntimed out after {timeout:g}s"
            return Completed(exit_code=124, output=output, timed_out=True)
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            # Reap it before the loop ends, or asyncio's child watcher complains about a closed loop.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 5)
            raise
        assert proc.returncode is not None
        return Completed(exit_code=proc.returncode, output=collected.decode("utf-8", "replace"))

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        """GET a URL from this machine (a local host shares the controller's network), by the same policy as
        on any other transport (checks/client.py)."""
        return await host_get(url, timeout, follow_redirects=follow_redirects)

    async def close(self) -> None:
        """Nothing to release for a local directory."""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class LocalTransport:
    """Hosts are directories under `root/<env>/<region>/<host>`; `deploy_to` lives inside each."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host_dir(self, host: Host) -> Path:
        """The directory that stands for a host."""
        return self.root / host.environment / host.region / host.name

    async def connect(self, host: Host) -> LocalConnection:
        """Make the host's directory if needed and return a connection to it."""
        directory = self.host_dir(host)
        directory.mkdir(parents=True, exist_ok=True)
        return LocalConnection(directory)

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        """`deploy_to` inside the host's directory."""
        return str(self.host_dir(host).resolve() / deploy_to.lstrip("/"))

    async def aclose(self) -> None:
        """Nothing shared to close."""


class ThisMachine:
    """The machine Conveyor runs on, as a host: `conveyor converge` on a host that starts (autoscaling).
    `deploy_to` is used as it is (under `root`, which only tests change)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    async def connect(self, host: Host) -> LocalConnection:
        """A connection that runs host scripts here."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(f"cannot use {self.root}: {exc}") from exc
        return LocalConnection(self.root)

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        """`deploy_to` on this machine."""
        return str(self.root / deploy_to.lstrip("/"))

    async def aclose(self) -> None:
        """Nothing shared to close."""
