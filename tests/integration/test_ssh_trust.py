"""What the SSH transport trusts, against a real sshd (tests/sshfleet): host keys under `accept-new`, and
agent forwarding; each test once per SSH client (`ssh.client`: asyncssh, the default, and openssh).

The host is reached by a name (`localhost`) while known_hosts may speak of it by its address
(`[127.0.0.1]:PORT`), as OpenSSH writes it for a port other than 22: asyncssh matches the name and the
address it connected to, and so must every decision Conveyor takes about the host's key.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from conveyor.config.models import SSH_DEFAULTS, SSHSettings  # noqa: E402
from conveyor.errors import TransportError  # noqa: E402
from conveyor.inventory import Host  # noqa: E402
from conveyor.transport.clients import SSHClients  # noqa: E402
from sshfleet import Fleet, FleetHost, missing_requirements  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_requirements()),
        reason=f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)",
    ),
]

NAME = "localhost"  # resolves to 127.0.0.1 here, and is not what the fleet's known_hosts says
CLIENTS = ("asyncssh", "openssh")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("trustfleet"), 1) as started:
        yield started


def keygen(path: Path, *options: str) -> str:
    """A new ed25519 key pair at `path`; its public key as `type base64`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, *options, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def host_key(host: FleetHost) -> str:
    """The key the host's sshd shows: `type base64`."""
    return " ".join(host.host_key.with_suffix(".pub").read_text().split()[:2])


def settings(fleet: Fleet, known_hosts: Path, mode: str = "accept-new", *, client: str, **more: object) -> SSHSettings:
    return SSH_DEFAULTS.merged(SSHSettings.model_validate({
        "user": "root", "identity_file": str(fleet.client_key), "known_hosts": mode,
        "known_hosts_file": str(known_hosts), "connect_timeout": 10, "client": client, **more}))


def connect(host: FleetHost, chosen: SSHSettings, address: str = NAME, command: str = "true") -> str:
    """Connect as Conveyor does (to `address`, the host's port), run `command`; what it printed."""

    async def attempt() -> str:
        transport = SSHClients(lambda _host: chosen)
        target = Host(name=host.name, environment="prod", region="za", role="web", address=address,
                      port=host.port)
        conn = await transport.connect(target)
        try:
            done = await conn.run(command, timeout=20)
            assert done.exit_code == 0, done.output
            return done.output
        finally:
            await conn.close()
            await transport.aclose()

    return asyncio.run(attempt())


def refused(host: FleetHost, chosen: SSHSettings) -> str:
    with pytest.raises(TransportError) as caught:
        connect(host, chosen)
    return caught.value.message


# ------------------------------------------------------------------------------------------- host keys


def test_accept_new_refuses_a_key_other_than_the_one_known_for_the_hosts_address(
        fleet: Fleet, tmp_path: Path, client: str) -> None:
    (host,) = fleet.hosts
    other = keygen(tmp_path / "k1")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{host.port} {other}\n")

    said = refused(host, settings(fleet, known, client=client))
    assert "CHANGED" in said, said
    assert known.read_text() == f"[127.0.0.1]:{host.port} {other}\n"  # nothing was appended

    # the same entry under the name it is reached by: refused the same way (and strict refuses both)
    known.write_text(f"[{NAME}]:{host.port} {other}\n")
    assert "CHANGED" in refused(host, settings(fleet, known, client=client))
    known.write_text(f"[127.0.0.1]:{host.port} {other}\n")
    assert "CHANGED" in refused(host, settings(fleet, known, "strict", client=client))
    assert known.read_text() == f"[127.0.0.1]:{host.port} {other}\n"


def test_accept_new_reads_hashed_entries_for_the_address_too(fleet: Fleet, tmp_path: Path, client: str) -> None:
    (host,) = fleet.hosts
    other = keygen(tmp_path / "k1")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{host.port} {other}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True, timeout=30)
    hashed = known.read_text()
    assert hashed.startswith("|1|")
    assert "127.0.0.1" not in hashed

    assert "CHANGED" in refused(host, settings(fleet, known, client=client))
    assert known.read_text() == hashed

    # and a hashed entry holding the host's real key is trusted, by address as by name
    known.write_text(f"[127.0.0.1]:{host.port} {host_key(host)}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True, timeout=30)
    hashed = known.read_text()
    assert connect(host, settings(fleet, known, "strict", client=client), command="echo ok") == "ok\n"
    assert connect(host, settings(fleet, known, client=client)) == ""
    assert known.read_text() == hashed


def test_a_revoked_key_is_refused_even_where_it_is_also_listed(fleet: Fleet, tmp_path: Path, client: str) -> None:
    (host,) = fleet.hosts
    known = tmp_path / "known_hosts"
    for lines in ([f"@revoked [127.0.0.1]:{host.port} {host_key(host)}", f"[127.0.0.1]:{host.port} {host_key(host)}"],
                  [f"@revoked * {host_key(host)}", f"[{NAME}]:{host.port} {host_key(host)}"],
                  [f"@revoked [127.0.0.1]:{host.port} {host_key(host)}"]):
        text = "".join(f"{line}\n" for line in lines)
        known.write_text(text)
        for mode in ("strict", "accept-new"):
            said = refused(host, settings(fleet, known, mode, client=client))
            assert "revoked" in said, said
        assert known.read_text() == text


def test_a_host_under_a_certificate_authority_is_not_an_unknown_host(fleet: Fleet, tmp_path: Path, client: str) -> None:
    (host,) = fleet.hosts
    authority = keygen(tmp_path / "ca")
    known = tmp_path / "known_hosts"
    for pattern in (f"[127.0.0.1]:{host.port}", "127.0.0.*", f"[{NAME}]:{host.port}"):
        text = f"@cert-authority {pattern} {authority}\n"
        known.write_text(text)
        said = refused(host, settings(fleet, known, client=client))
        assert "@cert-authority" in said, said
        assert known.read_text() == text


def test_accept_new_records_a_host_nothing_is_known_about_by_the_name_it_is_reached_by(
        fleet: Fleet, tmp_path: Path, client: str) -> None:
    (host,) = fleet.hosts
    elsewhere = keygen(tmp_path / "k1")
    known = tmp_path / "known_hosts"
    # keys of other hosts, and of this address on another port: none of them speaks of this host
    unrelated = f"[127.0.0.2]:{host.port} {elsewhere}\n[127.0.0.1]:{host.port + 1} {elsewhere}\n"
    known.write_text(unrelated)
    assert connect(host, settings(fleet, known, client=client)) == ""
    assert known.read_text() == unrelated + f"[{NAME}]:{host.port} {host_key(host)}\n"
    assert connect(host, settings(fleet, known, "strict", client=client), command="echo ok") == "ok\n"


# ------------------------------------------------------------------------------------------- agent


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A running ssh-agent (SSH_AUTH_SOCK), and a ~/.ssh/config (HOME) that asks to forward it to every host."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n    ForwardAgent yes\n")
    socket_path = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            assert process.poll() is None, "ssh-agent exited"
            assert time.monotonic() < deadline, "ssh-agent did not listen within 10s"
            time.sleep(0.02)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        yield socket_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_the_agent_is_not_forwarded_unless_the_config_asks_for_it(fleet: Fleet, agent: Path, client: str) -> None:
    (host,) = fleet.hosts
    settled = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(host.sshd_config)], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    assert "allowagentforwarding yes" in settled.splitlines()  # the host would take a forwarded agent
    show = 'printf "%s\\n" "${SSH_AUTH_SOCK-none}"'
    chosen = settings(fleet, fleet.known_hosts, "strict", client=client)

    # ~/.ssh/config says ForwardAgent yes: Conveyor forwards nothing all the same
    assert connect(host, chosen, "127.0.0.1", show) == "none\n"
    # unless conveyor.yml asks for it (which shows the host side would see it)
    forwarding = settings(fleet, fleet.known_hosts, "strict", agent_forwarding=True, client=client)
    seen = connect(host, forwarding, "127.0.0.1", show).strip()
    assert seen not in {"none", ""}
    assert seen != str(agent)  # the host's own socket, relaying to our agent
