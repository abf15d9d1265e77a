"""Calls to the outside world that end at their deadline, whatever the far end does.

A webhook that trickles one byte every half second never trips a socket timeout (each read gets something),
and a thread cannot be stopped: an abandoned sender thread (or Apprise's own worker threads, which the
interpreter joins at exit) kept a finished deployment's process alive for as long as the far end kept
talking. So every message (Apprise), Grafana annotation and Pushgateway push is made by a `CallerProcess`: a
small child Python process (`_caller.py`) that is killed when a call's time is up. Killing it ends the call,
its sockets, its DNS lookup and its threads at once; nothing is left behind to hold the process up.

Requests and answers are JSON lines on the child's stdin and stdout; secrets (URLs, tokens) travel there,
never in its command line. The child runs in a session of its own, so a Ctrl-C on the terminal does not cut
short the message that says the deployment was interrupted; its parent kills it instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from conveyor.values import format_duration

CHILD = Path(__file__).with_name("_caller.py")
# How long the child may take to be ready (Python's start, and Apprise's import when it is preloaded: about a
# second, a few when Python must compile it on a busy machine); a deadline of its own, before any call's.
STARTUP_TIMEOUT = 20.0


class CallFailed(Exception):
    """A call did not get an answer; `why` is said to a person."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class CallTimedOut(CallFailed):
    """A call outlived its deadline, and the process making it was killed."""


@dataclass(frozen=True)
class HTTPAnswer:
    """What an HTTP server answered."""

    status: int
    reason: str
    body: str


class CallerProcess:
    """A child process that makes calls one at a time, each ended by killing the child at its deadline.

    It is started by `start()` or the first call, and kept for the next calls; a call that times out kills
    it, and the next call starts a new one. `preload` names what it loads as it starts (`apprise`: a second's
    work, more when Python must compile it, better done while the deployment runs). A call's time counts from
    when it is made or, if later, from when the child is ready; getting ready has a deadline of its own
    (`STARTUP_TIMEOUT` from the start). `close()` ends it. One thread makes calls at a time; `close()` and
    `startup_left()` may come from any thread.
    """

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        self.preload = preload
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._ready = False
        self._pending = b""
        self._lock = threading.Lock()

    def __enter__(self) -> CallerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Start the child now, if it is not running (a failure is reported by the next call instead)."""
        with contextlib.suppress(CallFailed):
            self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id, while there is one."""
        with self._lock:
            return self._process.pid if self._process is not None else None

    def startup_left(self) -> float:
        """How long the child may still take to get ready: 0 once it is (or when none is starting)."""
        with self._lock:
            if self._process is None or self._ready:
                return 0.0
            return max(self._started + STARTUP_TIMEOUT - time.monotonic(), 0.0)

    def message(self, url: str, *, title: str, body: str, level: str, timeout: float) -> dict[str, Any]:
        """Send a message through Apprise: {"usable": bool, "sent": bool, "warnings": [...]}."""
        return self.call({"kind": "message", "url": url, "title": title, "body": body, "level": level}, timeout)

    def http(self, method: str, url: str, *, headers: dict[str, str], body: str | None,
             timeout: float) -> HTTPAnswer:
        """Make one HTTP(S) request; its answer, whatever the status. CallFailed when there was none."""
        answer = self.call({"kind": "http", "method": method, "url": url, "headers": headers, "body": body},
                           timeout)
        if "status" not in answer:
            raise CallFailed(str(answer.get("error") or "no answer"))
        return HTTPAnswer(int(answer["status"]), str(answer.get("reason") or ""), str(answer.get("body") or ""))

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer, for `timeout` seconds once the child is ready; CallTimedOut
        then (the child is killed). CallFailed if the child cannot be started, is not ready in time, or dies."""
        line = json.dumps({**request, "timeout": timeout}).encode("utf-8") + b"\n"
        process = self._start()
        try:
            self._wait_ready(process)
            deadline = time.monotonic() + timeout
            self._write(process, line, deadline)
            document = _document(self._read(process, deadline))
        except CallFailed:
            self._kill(process)
            raise
        return document

    def close(self) -> None:
        """End the child, if there is one (it has nothing to finish: every call it made was answered)."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            self._kill(process)

    # -- the child -----------------------------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._process is not None:
                if self._process.poll() is None:
                    return self._process
                for pipe in (self._process.stdin, self._process.stdout):  # it died on its own: start again
                    if pipe is not None:
                        pipe.close()
            if not sys.executable:
                raise CallFailed("cannot start the caller process: the Python interpreter's path is unknown")
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-P", str(CHILD), *self.preload], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
            except OSError as exc:
                raise CallFailed(f"cannot start the caller process: {exc}") from exc
            assert self._process.stdin is not None
            os.set_blocking(self._process.stdin.fileno(), False)  # a write never waits past the deadline
            self._pending = b""
            self._started, self._ready = time.monotonic(), False
            return self._process

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        if self._ready:
            return
        with self._lock:
            started = self._started
        try:
            said = _document(self._read(process, started + STARTUP_TIMEOUT))
        except CallTimedOut:
            raise CallFailed(f"the caller process was not ready within {format_duration(STARTUP_TIMEOUT)}") from None
        if said.get("ready") is not True:
            raise CallFailed("the caller process did not start as expected")
        with self._lock:
            self._ready = True

    def _write(self, process: subprocess.Popen[bytes], data: bytes, deadline: float) -> None:
        assert process.stdin is not None
        fd = process.stdin.fileno()
        while data:
            try:
                if not select.select([], [fd], [], max(deadline - time.monotonic(), 0.0))[1]:
                    raise CallTimedOut("timed out")
                written = os.write(fd, data)
            except BlockingIOError:
                continue
            except (OSError, ValueError) as exc:
                raise CallFailed(f"the caller process is gone: {exc}") from exc
            data = data[written:]

    def _read(self, process: subprocess.Popen[bytes], deadline: float) -> bytes:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            try:
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise CallTimedOut("timed out")
                chunk = os.read(fd, 65536)
            except (OSError, ValueError) as exc:  # closed under us by close() on another thread
                raise CallFailed(f"the caller process is gone: {exc}") from exc
            if not chunk:
                status = process.poll()
                raise CallFailed("the caller process ended without answering"
                                 + (f" (exit {status})" if status is not None else ""))
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        """Kill the child and everything it started (its session's process group), and reap it."""
        with self._lock:
            if self._process is process:
                self._process = None
            if process.returncode is None:  # not reaped yet, so its id is still its own
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):  # a killed process is reaped at once
                    process.wait(timeout=5)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


def _document(line: bytes) -> dict[str, Any]:
    try:
        document = json.loads(line)
    except ValueError:
        raise CallFailed("the caller process answered something that is not JSON") from None
    if not isinstance(document, dict):
        raise CallFailed("the caller process answered something that is not a JSON object")
    return document


def no_answer(timeout: float) -> str:
    """How a call that timed out is reported."""
    return f"no answer within {format_duration(timeout)}"
