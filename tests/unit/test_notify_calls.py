"""Calls to the outside world end at their deadline: the caller process against loopback servers that answer,
refuse, or answer one byte at a time and never finish."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conveyor.notify.apprise_target import AppriseTarget
from conveyor.notify.calls import CallerProcess, CallFailed, CallTimedOut
from conveyor.notify.delivery import Courier, DeliveryError, Failures
from conveyor.notify.message import Message


@contextmanager
def http_server(answer: bytes, *, trickle: float | None = None) -> Iterator[str]:
    """A loopback server answering every request with `answer`; with `trickle`, one byte every `trickle`
    seconds (until the block ends). Its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stopping = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            try:
                if trickle is None:
                    conn.sendall(answer)
                    return
                for byte in answer:
                    if stopping.wait(trickle):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{"id": 7}'
REFUSED = (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 27\r\nConnection: close\r\n\r\n"
           b'{"message": "Invalid key"}\n')
ENDLESS = b"HTTP/1.1 200 OK\r\nContent-Length: 600\r\nConnection: close\r\n\r\n" + b" " * 600


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    except OSError:
        return False


def test_an_answer_is_an_answer_whatever_its_status() -> None:
    with http_server(OK) as url, CallerProcess() as caller:
        answer = caller.http("POST", url + "/api/annotations", headers={"Content-Type": "application/json"},
                             body="{}", timeout=5)
        assert (answer.status, answer.reason, answer.body) == (200, "OK", '{"id": 7}')
    with http_server(REFUSED) as url, CallerProcess() as caller:
        answer = caller.http("PUT", url + "/metrics", headers={}, body="x 1\n", timeout=5)
        assert (answer.status, answer.reason) == (401, "Unauthorized")
        assert answer.body == '{"message": "Invalid key"}\n'


def test_no_server_is_a_failure_that_says_so() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with CallerProcess() as caller, pytest.raises(CallFailed, match="refused") as failed:
        caller.http("GET", f"http://127.0.0.1:{port}/", headers={}, body=None, timeout=5)
    assert not isinstance(failed.value, CallTimedOut)


def test_only_http_urls_are_called() -> None:
    with CallerProcess() as caller, pytest.raises(CallFailed, match="only http"):
        caller.http("GET", "file:///etc/passwd", headers={}, body=None, timeout=5)


def test_a_call_that_never_finishes_ends_at_its_timeout_with_the_process_that_made_it() -> None:
    with http_server(OK) as quick, http_server(ENDLESS, trickle=0.1) as url, CallerProcess() as caller:
        caller.http("GET", quick, headers={}, body=None, timeout=5)  # the process is ready
        pid = caller.pid
        assert pid is not None
        began = time.monotonic()
        with pytest.raises(CallTimedOut):
            caller.http("GET", url, headers={}, body=None, timeout=1)
        took = time.monotonic() - began
        assert 1 <= took < 2, took
        assert not running(pid)
        assert caller.pid is None
        # the next call starts a new process
        with pytest.raises(CallTimedOut):
            caller.http("GET", url, headers={}, body=None, timeout=0.5)
    assert caller.pid is None


def test_closing_ends_the_process_and_a_call_on_its_way() -> None:
    with http_server(ENDLESS, trickle=0.1) as url:
        caller = CallerProcess()
        caller.start()
        pid = caller.pid
        assert pid is not None
        failed: list[BaseException] = []

        def call() -> None:
            try:
                caller.http("GET", url, headers={}, body=None, timeout=30)
            except CallFailed as exc:
                failed.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 10
        while caller.startup_left() > 0:  # the child is ready (and the call on its way)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        caller.close()
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert len(failed) == 1
        assert not running(pid)


def test_a_url_apprise_cannot_send_to_is_said_so() -> None:
    target = AppriseTarget("nosuchscheme://example.com/x", 10)
    try:
        with pytest.raises(DeliveryError, match="not a URL Apprise can send to"):
            target.send(Message("title", "body", "info"))
    finally:
        target.close()


def test_a_message_that_never_finishes_is_reported_by_its_timeout() -> None:
    with http_server(ENDLESS, trickle=0.1) as url:
        target = AppriseTarget(f"json://{url.removeprefix('http://')}/hooks", 1)
        try:
            with pytest.raises(DeliveryError) as failed:
                target.send(Message("title", "body", "info"))
        finally:
            target.close()
    assert failed.value.why == "no answer within 1s"


def test_waiting_for_a_courier_allows_for_its_senders_start() -> None:
    failures = Failures(None, "alice", "production")
    courier = Courier("slow to start", 1.0, failures, grace=lambda: 10.0)
    release = threading.Event()
    courier.post(lambda: release.wait(30))
    try:
        assert courier.deadline() - time.monotonic() > 10.5
    finally:
        release.set()
    assert courier.drain()
    assert courier.deadline() - time.monotonic() < 1  # nothing left: no grace either
