"""TCP connections opened while a command starts: handed out once, fresh, to the endpoint asked for; never a
second way to fail; closed when nobody took them. And which hosts a workspace opens them to."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.engine.plan import make_plan
from conveyor.operations.workspace import Workspace
from conveyor.transport import early as early_module
from conveyor.transport.early import EarlyConnections


class _Server:
    """A loopback listener that accepts every connection and says hello, as an SSH server does first."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.sendall(b"SSH-2.0-test\r\n")
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def server() -> Iterator[_Server]:
    started = _Server()
    yield started
    started.close()


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as spare:
        return int(spare.getsockname()[1])


def test_a_connection_is_handed_out_once_already_talking(server: _Server) -> None:
    early = EarlyConnections([("127.0.0.1", server.port)], timeout=5, pace=0)
    assert early.wait(5)
    sock = early.take("127.0.0.1", server.port)
    assert sock is not None
    sock.setblocking(True)
    sock.settimeout(5)
    assert sock.recv(100) == b"SSH-2.0-test\r\n"
    assert early.take("127.0.0.1", server.port) is None  # once
    sock.close()
    early.close()


def test_an_endpoint_nobody_listens_on_is_not_a_failure_just_no_connection() -> None:
    port = _closed_port()
    early = EarlyConnections([("127.0.0.1", port)], timeout=5, pace=0)
    assert early.wait(5)
    assert early.take("127.0.0.1", port) is None


def test_an_endpoint_not_asked_for_is_not_handed_out(server: _Server) -> None:
    early = EarlyConnections([("127.0.0.1", server.port)], timeout=5, pace=0)
    assert early.wait(5)
    assert early.take("127.0.0.2", server.port) is None
    assert early.take("127.0.0.1", server.port + 1 if server.port < 65535 else 1) is None
    early.close()


def test_a_stale_connection_is_closed_not_handed_out(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    early = EarlyConnections([("127.0.0.1", server.port)], timeout=5, pace=0)
    assert early.wait(5)
    ((opened, sock),) = early._ready.values()
    monkeypatch.setattr(early_module.time, "monotonic", lambda: opened + early_module.FRESH_FOR + 1)
    assert early.take("127.0.0.1", server.port) is None
    assert sock.fileno() == -1  # closed


def test_asked_for_before_it_was_open_the_caller_connects_and_the_late_one_is_closed(
        server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    opening = threading.Event()
    proceed = threading.Event()
    made: list[socket.socket] = []
    real = socket.create_connection

    def slow(address: Any, timeout: float) -> socket.socket:
        opening.set()
        proceed.wait(5)
        sock = real(address, timeout=timeout)
        made.append(sock)
        return sock

    monkeypatch.setattr(early_module.socket, "create_connection", slow)
    early = EarlyConnections([("127.0.0.1", server.port)], timeout=5, pace=0)
    assert opening.wait(5)
    assert early.take("127.0.0.1", server.port) is None  # not ready: the engine connects itself
    proceed.set()
    assert early.wait(5)
    assert made[0].fileno() == -1  # opened too late, and closed at once
    assert early._ready == {}


def test_closing_closes_what_nobody_took_and_stops_opening(server: _Server) -> None:
    second = _Server()
    try:
        early = EarlyConnections([("127.0.0.1", server.port), ("127.0.0.1", second.port)], timeout=5, pace=0)
        assert early.wait(5)
        socks = [sock for _opened, sock in early._ready.values()]
        assert len(socks) == 2
        early.close()
        assert all(sock.fileno() == -1 for sock in socks)
        assert early.take("127.0.0.1", server.port) is None
    finally:
        second.close()


# -- which hosts a workspace opens them to ----------------------------------------------------------------


def _workspace(tmp_path: Path, hosts: dict[str, Any], **ssh: Any) -> Workspace:
    config = {
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": "true", "canary": 1, "batch": 2}, "batch": {"restart": "true"}},
        "environments": {"production": {"transport": "ssh", "ssh": {"user": "deploy", **ssh},
                                        "regions": {"za": {"hosts": hosts}}}},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "conveyor.yml").write_text(yaml.safe_dump(config))
    return Workspace.load(tmp_path / "conveyor.yml")


HOSTS = {"web": [{"name": f"web-{i}", "address": f"10.0.0.{i}", "port": 2200 + i} for i in range(1, 5)],
         "batch": [{"name": "batch-1", "address": "10.0.1.1"}]}


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[tuple[str, int]]]:
    """The endpoints each EarlyConnections was made for (none is opened); HOME without ~/.ssh/config."""
    made: list[list[tuple[str, int]]] = []

    class _Recorded:
        def __init__(self, endpoints: list[tuple[str, int]], timeout: float) -> None:
            made.append(list(endpoints))
            self.timeout = timeout

        def close(self) -> None:
            pass

    monkeypatch.setattr(early_module, "EarlyConnections", _Recorded)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return made


def _warm(ws: Workspace) -> None:
    ws.warm("production", make_plan(ws.config, "production", ws.hosts("production")))


def test_the_first_batch_of_each_role_is_opened_early(tmp_path: Path, opened: list[Any]) -> None:
    ws = _workspace(tmp_path / "c", HOSTS)
    _warm(ws)
    # web: the canary (web-1) is its first batch; batch: its only host, on the region's port.
    assert [sorted(endpoints) for endpoints in opened] == [[("10.0.0.1", 2201), ("10.0.1.1", 22)]]
    ws.close()


def test_nothing_is_opened_early_with_an_ssh_config_a_bastion_or_the_openssh_client(
        tmp_path: Path, opened: list[Any]) -> None:
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text("Host 10.0.*\n  ProxyJump somewhere\n")
    _warm(_workspace(tmp_path / "a", HOSTS))
    (ssh_dir / "config").unlink()
    _warm(_workspace(tmp_path / "b", HOSTS, jump="bastion.example.com"))
    _warm(_workspace(tmp_path / "c", HOSTS, client="openssh"))
    assert opened == []
    _warm(_workspace(tmp_path / "d", HOSTS))
    assert len(opened) == 1


def test_a_transport_given_for_the_environment_is_left_alone(tmp_path: Path, opened: list[Any]) -> None:
    ws = _workspace(tmp_path / "c", HOSTS)
    ws.transports["production"] = object()  # type: ignore[assignment]
    _warm(ws)
    assert opened == []


def test_rollback_yes_opens_them_before_it_starts_rolling_back(tmp_path: Path, opened: list[Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # `conveyor rollback --yes` plans from the config alone and opens the first hosts' connections before the
    # rollback (its state store, its lock, its gates) begins.
    from conveyor.cli.app import main
    from conveyor.errors import UsageError

    ws = _workspace(tmp_path / "c", HOSTS)
    seen: list[int] = []

    def rollback(ws: Workspace, request: Any, **_: Any) -> Any:
        seen.append(len(opened))
        raise UsageError("stopped by the test")

    import conveyor.operations.deploy

    monkeypatch.setattr(conveyor.operations.deploy, "rollback", rollback)
    with pytest.raises(SystemExit) as exited:
        main(["-c", str(ws.directory / "conveyor.yml"), "rollback", "production", "--yes", "--json"])
    assert exited.value.code == 2
    assert seen == [1]
    assert [sorted(endpoints) for endpoints in opened] == [[("10.0.0.1", 2201), ("10.0.1.1", 22)]]
