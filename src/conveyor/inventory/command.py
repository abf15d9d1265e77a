"""The command provider: a local program that prints a region's hosts as JSON.

It runs with `sh -c` in the config's directory, with `CONVEYOR_APP`, `CONVEYOR_ENV` and `CONVEYOR_REGION`
set, and must finish within its timeout; what it prints is read by `document.parse_inventory`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from conveyor.inventory.base import InventoryProblem, Scope
from conveyor.inventory.document import parse_inventory
from conveyor.inventory.host import Host
from conveyor.values import format_duration

STDERR_LINES = 8        # the tail of stderr quoted when the command fails
STDERR_CHARS = 2000
REAP_SECONDS = 5.0      # after killing a command that timed out, how long we wait for its pipes to close


@dataclass(frozen=True)
class CommandProvider:
    """Hosts from a program's JSON output: `inventory: {command: "./inventory.sh ca", timeout: 30s}`."""

    command: str
    timeout: float = 30.0

    def describe(self) -> str:
        """What the provider is, for messages."""
        return f"command {self.command!r}"

    def hosts(self, scope: Scope) -> list[Host]:
        """Run the command and read the hosts it prints."""
        env = dict(os.environ, CONVEYOR_APP=scope.app, CONVEYOR_ENV=scope.environment,
                   CONVEYOR_REGION=scope.region)
        text = run_command(self.command, cwd=str(scope.directory), env=env, timeout=self.timeout)
        return [scope.host(role, spec) for role, spec in parse_inventory(text, scope.roles)]


def run_command(command: str, *, cwd: str, env: dict[str, str], timeout: float) -> str:
    """The stdout of `sh -c command`; InventoryProblem when it cannot start, fails or outlives `timeout`."""
    try:
        # Its own process group, so that a timeout stops the whole pipeline, not only `sh`.
        process = subprocess.Popen(["sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise InventoryProblem(f"cannot be started in {cwd}: {exc.strerror}") from None
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise InventoryProblem(f"did not finish within {format_duration(timeout)} and was stopped "
                               "(raise inventory.timeout if it needs longer)") from None
    except BaseException:
        _stop(process)  # interrupted (Ctrl-C): its own session does not get the signal, so stop it ourselves
        raise
    if process.returncode != 0:
        code = process.returncode
        status = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = stderr_tail(err)
        raise InventoryProblem(f"{status}; its stderr ends:\n{tail}" if tail else f"{status} (nothing on stderr)")
    return out.decode("utf-8", errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the command's process group and collect it, without waiting forever on inherited pipes."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # A child that left the group still holds the pipes: stop reading, the command itself is gone.
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        process.wait(timeout=REAP_SECONDS)


def stderr_tail(err: bytes) -> str:
    """The last lines of a command's stderr, trimmed, for a message."""
    lines = [line.rstrip() for line in err.decode("utf-8", errors="replace").strip().splitlines()]
    tail = "\n".join(lines[-STDERR_LINES:])
    return tail[-STDERR_CHARS:]
