"""TCP connections to the first hosts of a rollback, opened while the command is still starting.

Between reading its config and reaching its first host, `conveyor rollback --yes` spends ~0.3 s loading its
state store, taking the lock and judging its gates. The hosts it will reach first are known by then, so a thread
opens their TCP connections meanwhile: the network's round trip and the SSH server's start (sshd forks and
executes itself for every connection, ~10 ms of a host's CPU) are over when the engine asks for the host,
and asyncssh carries on over the socket (`sock=`).

Best effort, never a second way to fail: a connection that is refused, times out, or is not ready when asked
for is simply not used, and the engine connects as ever (saying why, if it fails). A socket is only handed
out while its server would still wait for a login (FRESH_FOR, well inside OpenSSH's LoginGraceTime), and
one never asked for is closed with the transport. Connections are opened one after another, PACE apart: a
burst of accepts on the controller's own machine (a test fleet) would otherwise take the core the starting
command runs on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence

__all__ = ["FRESH_FOR", "PACE", "EarlyConnections"]

PACE = 0.002  # seconds between two connections' starts
FRESH_FOR = 30.0  # seconds a connection is handed out after it opened; sshd waits 120 for a login by default


class EarlyConnections:
    """Connections to `endpoints` (host, port), opened in order by a daemon thread; `take` hands each out once."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], timeout: float, *, pace: float = PACE) -> None:
        self._lock = threading.Lock()
        self._ready: dict[tuple[str, int], tuple[float, socket.socket]] = {}
        self._unwanted: set[tuple[str, int]] = set()
        self._closed = False
        self._endpoints = list(dict.fromkeys(endpoints))
        self._timeout = timeout
        self._pace = pace
        self._thread = threading.Thread(target=self._open_all, name="conveyor-early-connections", daemon=True)
        self._thread.start()

    def _open_all(self) -> None:
        for number, endpoint in enumerate(self._endpoints):
            if number and self._pace:
                time.sleep(self._pace)
            with self._lock:
                if self._closed:
                    return
                if endpoint in self._unwanted:
                    continue
            try:
                sock = socket.create_connection(endpoint, timeout=self._timeout)
            except OSError:
                continue  # the engine connects itself, and says why it cannot
            with self._lock:
                if self._closed or endpoint in self._unwanted:
                    sock.close()
                else:
                    self._ready[endpoint] = (time.monotonic(), sock)

    def take(self, host: str, port: int) -> socket.socket | None:
        """The open connection to (host, port), once, if it is ready and fresh; None otherwise (and then none
        will be kept for it: the caller connects itself)."""
        endpoint = (host, port)
        with self._lock:
            self._unwanted.add(endpoint)
            opened, sock = self._ready.pop(endpoint, (0.0, None))
        if sock is not None and time.monotonic() - opened > FRESH_FOR:
            sock.close()
            return None
        return sock

    def close(self) -> None:
        """Stop opening connections and close those never taken."""
        with self._lock:
            self._closed = True
            ready, self._ready = list(self._ready.values()), {}
        for _opened, sock in ready:
            with contextlib.suppress(OSError):
                sock.close()

    def wait(self, timeout: float) -> bool:
        """Whether the thread has finished (tests)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
