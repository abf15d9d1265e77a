"""A connection opened while the command started carries the SSH session against a real sshd (tests/sshfleet),
with the same host-key check as any other; `conveyor rollback --yes` opens them for the hosts it moves first."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from conveyor.config.models import SSH_DEFAULTS, SSHSettings  # noqa: E402
from conveyor.errors import TransportError  # noqa: E402
from conveyor.inventory import Host  # noqa: E402
from conveyor.transport.early import EarlyConnections  # noqa: E402
from conveyor.transport.ssh import SSHTransport  # noqa: E402
from sshfleet import Fleet, missing_requirements  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_requirements()),
                       reason=f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)"),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("earlyfleet"), 2) as started:
        yield started


def _settings(fleet: Fleet, known_hosts: Path) -> SSHSettings:
    return SSH_DEFAULTS.merged(SSHSettings.model_validate({
        "user": "root", "identity_file": str(fleet.client_key), "known_hosts": "strict",
        "known_hosts_file": str(known_hosts), "connect_timeout": 10}))


def _run(fleet: Fleet, settings: SSHSettings, early: EarlyConnections) -> list[tuple[str, tuple[str, int]]]:
    """hostname on every fleet host through a transport holding `early`: what each said, and the local end of
    the socket its session went over."""

    async def each() -> list[tuple[str, tuple[str, int]]]:
        transport = SSHTransport(lambda _host: settings, early=early)
        out = []
        for fleet_host in fleet.hosts:
            host = Host(name=fleet_host.name, environment="prod", region="za", role="web", address="127.0.0.1",
                        port=fleet_host.port)
            conn = await transport.connect(host)
            try:
                done = await conn.run("hostname", timeout=20)
                assert done.exit_code == 0, done.output
                out.append((done.output.strip(), conn.conn.get_extra_info("sockname")[:2]))
            finally:
                await conn.close()
        await transport.aclose()
        return out

    return asyncio.run(each())


def test_the_session_runs_over_the_connection_opened_early(fleet: Fleet) -> None:
    early = EarlyConnections([("127.0.0.1", h.port) for h in fleet.hosts], timeout=10)
    assert early.wait(10)
    opened = {port: sock.getsockname()[:2] for (_address, port), (_at, sock) in early._ready.items()}
    ran = _run(fleet, _settings(fleet, fleet.known_hosts), early)
    assert [said for said, _end in ran] == [h.name for h in fleet.hosts]
    early.close()
    assert [end for _said, end in ran] == [opened[h.port] for h in fleet.hosts]  # the same sockets
    assert early._ready == {}
    early.close()


def test_a_connection_opened_early_gets_the_same_host_key_check(fleet: Fleet, tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")  # strict, and nothing known: refused, early or not
    early = EarlyConnections([("127.0.0.1", fleet.hosts[0].port)], timeout=10)
    assert early.wait(10)
    with pytest.raises(TransportError) as caught:
        _run(fleet, _settings(fleet, tmp_path / "known_hosts"), early)
    assert "refused" in caught.value.message, caught.value.message
    assert early._ready == {}
    early.close()


def test_a_host_whose_early_connection_failed_is_connected_as_ever(fleet: Fleet) -> None:
    # Early connections to an address the host is not on: none opens, and the engine connects itself.
    early = EarlyConnections([("127.0.0.2", 1)], timeout=2)
    assert early.wait(10)
    ran = _run(fleet, _settings(fleet, fleet.known_hosts), early)
    assert [said for said, _end in ran] == [h.name for h in fleet.hosts]
    early.close()
