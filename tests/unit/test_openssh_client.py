"""The OpenSSH client transport's pieces that need no host: which client a host gets, the ssh_config it is
started with, how OpenSSH's complaints are put, and the stop of a timed-out script under Debian's sh (dash).
The transport against real sshd hosts is in tests/integration (test_ssh_fleet_deploy.py, test_ssh_trust.py,
test_checks_http.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.config.models import SSH_DEFAULTS, SSHSettings
from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.transport.clients import SSHClients
from conveyor.transport.openssh import _FOUND, OpenSSHTransport, _Settings
from conveyor.transport.remote import stop_script

HOST = Host(name="za-web-1", environment="prod", region="za", role="web", address="10.0.0.1")


def settings(**fields: object) -> SSHSettings:
    return SSH_DEFAULTS.merged(SSHSettings.model_validate(fields))


def config_text(tmp_path: Path, chosen: SSHSettings) -> str:
    _Settings("ssh", tmp_path / "config", chosen, True, HOST.name)
    return (tmp_path / "config").read_text()


def test_asyncssh_is_the_default_client_and_openssh_is_chosen_per_host() -> None:
    chosen = {"za-web-1": settings(client="openssh"), "za-web-2": settings()}
    clients = SSHClients(lambda host: chosen[host.name])
    first = clients.client(HOST)
    assert isinstance(first, OpenSSHTransport)
    other = clients.client(Host(name="za-web-2", environment="prod", region="za", role="web", address="10.0.0.2"))
    assert type(other).__name__ == "SSHTransport"
    assert clients.client(HOST) is first  # one transport per client, shared by its hosts


def test_a_deployment_over_openssh_never_imports_asyncssh(tmp_path: Path) -> None:
    # asyncssh and cryptography cost a tenth of a second before the first byte; only a host using it pays it
    code = ("import sys\n"
            "from conveyor.operations.workspace import Workspace\n"
            f"ws = Workspace.load({str(tmp_path / 'conveyor.yml')!r})\n"
            "transport = ws.transport('production')\n"
            "host = ws.hosts('production')['za'][0]\n"
            "print(type(transport.client(host)).__name__, 'asyncssh' in sys.modules, 'cryptography' in sys.modules)\n")
    (tmp_path / "conveyor.yml").write_text(
        "app: www\nssh: {client: openssh}\nroles: {web: {}}\nenvironments:\n  production:\n    regions:\n"
        "      za: {hosts: {web: [za-web-1]}}\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["OpenSSHTransport", "False", "False"]


def test_the_config_file_says_what_the_settings_say(tmp_path: Path) -> None:
    key = tmp_path / "deploy key"
    key.write_text("not read here")
    text = config_text(tmp_path, settings(user="deploy", identity_file=str(key), known_hosts="accept-new",
                                          known_hosts_file="/etc/ssh/fleet%known", connect_timeout=2.5))
    lines = [line.strip() for line in text.splitlines()]
    assert (tmp_path / "config").stat().st_mode & 0o777 == 0o600
    assert "StrictHostKeyChecking accept-new" in lines
    assert 'UserKnownHostsFile "/etc/ssh/fleet%%known"' in lines  # % is literal, not an OpenSSH token
    assert "GlobalKnownHostsFile /dev/null" in lines
    assert f'IdentityFile "{key}"' in lines
    assert "IdentitiesOnly yes" in lines
    assert 'User "deploy"' in lines
    assert "ConnectTimeout 3" in lines  # whole seconds, rounded up
    assert "ForwardAgent no" in lines
    assert "BatchMode yes" in lines
    assert lines.index("Host *") < lines.index("Match all") < lines.index("Include ~/.ssh/config")
    (tmp_path / "config").unlink()
    strict = config_text(tmp_path, settings())
    assert "  StrictHostKeyChecking yes" in strict.splitlines()


@pytest.mark.parametrize("hostile", ['/tmp/k"\n  ProxyCommand sh -c evil', "/tmp/known\nPermitLocalCommand yes"])
def test_a_setting_that_would_add_options_of_its_own_is_refused(tmp_path: Path, hostile: str) -> None:
    with pytest.raises(TransportError) as caught:
        config_text(tmp_path, settings(known_hosts_file=hostile))
    assert "cannot be given to the OpenSSH client" in caught.value.message
    assert not (tmp_path / "config").exists()


def test_a_missing_identity_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TransportError) as caught:
        config_text(tmp_path, settings(identity_file=str(tmp_path / "nope")))
    assert caught.value.message == f"za-web-1: identity_file {tmp_path / 'nope'} does not exist"


CONFIG = _Settings.__new__(_Settings)
CONFIG.known_file = Path("/k/known_hosts")
CONFIG.settings = settings(connect_timeout=4)
TARGET = ["-l", "deploy", "-p", "2222", "--", "web-1"]


@pytest.mark.parametrize(("said", "expected"), [
    ("@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@\nHost key verification failed.\n",
     "refused: its host key has CHANGED since it was recorded in /k/known_hosts"),
    ("Host key ED25519 SHA256:abc revoked by file /k/known_hosts\nHost key verification failed.\n",
     "refused: its host key is marked @revoked in /k/known_hosts"),
    ("No ED25519 host key is known for [web-1]:2222 and you have requested strict checking.\n"
     "Host key verification failed.\n",
     "refused: its host key is not in /k/known_hosts (add it, or set ssh.known_hosts: accept-new)"),
    ("deploy@web-1: Permission denied (publickey).\n", "authentication failed for user deploy"),
    ("ssh: connect to host web-1 port 2222: Connection refused\n", "connection refused by web-1:2222"),
    ("ssh: connect to host web-1 port 2222: Connection timed out\n",
     "timed out connecting to web-1:2222 (no SSH answer within 4s)"),
    ("ssh: Could not resolve hostname web-1: Name or service not known\n",
     "cannot resolve web-1: Name or service not known"),
    ("kex_exchange_identification: read: Connection reset by peer\n",
     "cannot connect to web-1:2222: kex_exchange_identification: read: Connection reset by peer"),
    ("", "cannot connect to web-1:2222: ssh failed without saying why"),
])
def test_openssh_complaints_are_put_in_the_transports_words(said: str, expected: str) -> None:
    assert OpenSSHTransport._why(said, TARGET, CONFIG, False) == expected


def test_a_host_only_a_certificate_authority_vouches_for_is_refused_as_such() -> None:
    said = "No ED25519 host key is known for web-1 and you have requested strict checking.\n"
    assert "@cert-authority" in OpenSSHTransport._why(said, TARGET, CONFIG, True)


def test_what_ssh_keygen_finds_is_read_by_kind() -> None:
    lines = ["# Host [10.0.0.1]:2222 found: line 1 ", "# Host [10.0.0.1]:2222 found: line 3 CA",
             "# Host [10.0.0.1]:2222 found: line 4 REVOKED", "ssh-ed25519 AAAA"]
    assert [m.group(1) or "key" for line in lines if (m := _FOUND.match(line))] == ["key", "CA", "REVOKED"]


@pytest.mark.skipif(shutil.which("dash") is None, reason="needs dash, Debian's sh")
def test_the_stop_of_a_timed_out_script_works_under_dash() -> None:
    # A script's shell (its own process group, as a session's is) and a child; the stop must end both.
    started = subprocess.Popen(["dash", "-c", 'echo "@@conveyor pid=$$ $PPID"; sleep 300 & wait'],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert started.stdout is not None
        said = started.stdout.readline()
        stop = stop_script(said)
        assert stop is not None
        assert " -- " not in stop  # dash's kill takes no `--`
        subprocess.run(["dash", "-c", stop], check=True, timeout=30)
        started.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:  # the sleep went with its group
            try:
                os.killpg(started.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the script's process group outlived the stop"
            time.sleep(0.02)
    finally:
        if started.poll() is None:
            os.killpg(started.pid, signal.SIGKILL)
            started.wait()
        if started.stdout is not None:
            started.stdout.close()
