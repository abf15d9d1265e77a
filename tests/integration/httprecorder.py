"""A recording HTTP server on 127.0.0.1: stands in for Slack, Grafana and webhooks in tests.

It records every request (method, path, headers, body) and answers from a small table: by default 200 with
`{}`; `POST /api/annotations` answers a new annotation id, as Grafana does. `fail(path_prefix, status)`
makes matching requests answer an error; `trickle(path_prefix)` makes them answer one byte every half second
for a minute (a far end that is never silent long enough for a socket timeout, and never done). Tests wait
on what it recorded with `wait_for`, never sleep.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")


class Recorder:
    """The server's state: what it received, and how it answers."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.failures: dict[str, int] = {}
        self.trickles: dict[str, tuple[float, float]] = {}
        self.stopping = threading.Event()
        self.changed = threading.Condition()
        self.next_id = 1
        self.port = 0

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def fail(self, path_prefix: str, status: int = 500) -> None:
        """Answer `status` to every request whose path starts with `path_prefix`."""
        self.failures[path_prefix] = status

    def trickle(self, path_prefix: str = "/", every: float = 0.5, seconds: float = 60.0) -> None:
        """Answer every request under `path_prefix` with a 200 that comes one byte every `every` seconds, status
        line and headers included, for about `seconds` (until the server stops)."""
        self.trickles[path_prefix] = (every, seconds)

    def trickling(self, path: str) -> tuple[float, float] | None:
        """(every, seconds) if requests to `path` are answered a byte at a time."""
        return next((pace for prefix, pace in self.trickles.items() if path.startswith(prefix)), None)

    def received(self, method: str | None = None, path_prefix: str = "") -> list[Recorded]:
        """The requests so far, oldest first, of one method and under one path if asked."""
        with self.changed:
            return [r for r in self.requests
                    if (method is None or r.method == method) and r.path.startswith(path_prefix)]

    def wait_for(self, condition: Callable[[list[Recorded]], bool], timeout: float = 10.0,
                 what: str = "requests") -> list[Recorded]:
        """Wait until `condition(requests)` holds; AssertionError naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; got "
                                         f"{[(r.method, r.path) for r in self.requests]}")
                self.changed.wait(left)
            return list(self.requests)

    def answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """The status and JSON body to answer a request with."""
        for prefix, status in self.failures.items():
            if path.startswith(prefix):
                return status, {"message": "recorder says no"}
        if method == "POST" and path.partition("?")[0] == "/api/annotations":
            with self.changed:
                number, self.next_id = self.next_id, self.next_id + 1
            return 200, {"id": number, "message": "Annotation added"}
        return 200, {}

    def record(self, request: Recorded) -> None:
        """Keep a request and wake whoever waits."""
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorder.record(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                     body))
            pace = recorder.trickling(self.path)
            if pace is not None:
                self._trickle(*pace)
                return
            status, document = recorder.answer(self.command, self.path)
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _trickle(self, every: float, seconds: float) -> None:
            # The whole answer, status line first, a byte at a time: no part of it ever arrives complete.
            count = max(int(seconds / every), 1)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            length = max(count - len(head) - 8, 1)
            answer = head + f"{length}\r\n\r\n".encode() + b" " * length
            try:
                for byte in answer:
                    if recorder.stopping.wait(every):
                        break
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:  # the caller hung up: what a deadline is for
                pass
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def recording_server() -> Iterator[Recorder]:
    """A Recorder listening on a free loopback port until the block ends."""
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    server.daemon_threads = True
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
