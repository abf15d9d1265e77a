"""The sshd test fleet (tests/sshfleet): real OpenSSH hosts on 127.0.0.1, each with its own namespaces."""

from __future__ import annotations

import contextlib
import os
import select
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

from sshfleet import SSHD, Fleet, FleetHost, missing_requirements  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_requirements()),
        reason=f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)",
    ),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("fleet"), 3, bastion=True) as started:
        yield started


def ssh(fleet: Fleet, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(fleet.ssh_config), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_three_hosts_and_a_bastion_start(fleet: Fleet) -> None:
    assert [h.name for h in fleet.hosts] == ["h01", "h02", "h03"]
    assert fleet.bastion is not None
    assert fleet.bastion.name == "bastion"
    assert fleet.host("bastion") is fleet.bastion
    ports = {h.port for h in fleet.all_hosts}
    assert len(ports) == 4
    for host in fleet.all_hosts:
        # the recorded PID is the sshd itself (unshare and sh exec'd into it), in a mount namespace of its own
        assert os.readlink(f"/proc/{host.pid}/exe") == SSHD
        assert str(host.sshd_config) in Path(f"/proc/{host.pid}/cmdline").read_text()
        assert os.readlink(f"/proc/{host.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        assert os.readlink(f"/proc/{host.pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
    known = fleet.known_hosts.read_text().splitlines()
    assert sorted(known) == sorted(f"[127.0.0.1]:{h.port} ssh-ed25519 {h.known_hosts_line.split()[2]}"
                                   for h in fleet.all_hosts)
    config = fleet.ssh_config.read_text()
    for host in fleet.all_hosts:
        assert f"Host {host.name}\n    HostName 127.0.0.1\n    Port {host.port}\n" in config
    assert "KexAlgorithms curve25519-sha256" in config
    with pytest.raises(KeyError, match="h09"):
        fleet.host("h09")


def test_each_host_has_its_own_hostname_and_fresh_home(fleet: Fleet) -> None:
    for host in fleet.all_hosts:
        result = ssh(fleet, host.name, "hostname; echo $HOME; ls -A ~")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [host.name, "/root", ".ssh"]
        assert result.stderr == ""
    assert os.uname().nodename not in {h.name for h in fleet.all_hosts}


def test_each_host_has_its_own_srv(fleet: Fleet) -> None:
    h01, h02 = fleet.host("h01"), fleet.host("h02")
    result = h01.run("echo written-on-h01 > /srv/marker")
    assert result.returncode == 0, result.stderr
    assert (h01.srv / "marker").read_text() == "written-on-h01\n"
    assert not (h02.srv / "marker").exists()
    assert h02.run("test -e /srv/marker").returncode == 1
    assert not Path("/srv/marker").exists()  # the controller's /srv is untouched


def test_run_quotes_an_argv(fleet: Fleet) -> None:
    result = fleet.host("h02").run(["printf", "%s|", "a b", "$HOME", "'; touch /srv/pwned #"])
    assert result.stdout == "a b|$HOME|'; touch /srv/pwned #|"
    assert not (fleet.host("h02").srv / "pwned").exists()


def test_jump_through_the_bastion(fleet: Fleet) -> None:
    result = ssh(fleet, "-J", "bastion", "h02", "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "h02\n"
    # and it really goes through the bastion: with the bastion hung, the jump fails but h02 itself answers
    assert fleet.bastion is not None
    fleet.bastion.pause()
    try:
        # ConnectTimeout ends ssh after a second. Its jump (`ssh -W` to the hung bastion, a child of its own)
        # can outlive it, so ssh's exit is waited for, not the end of output pipes the jump may still hold; it
        # runs in a session of its own, stopped whole if it ever hangs.
        argv = ["ssh", "-F", str(fleet.ssh_config), "-o", "ConnectTimeout=1", "-J", "bastion", "h02", "true"]
        with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) as jump:
            try:
                assert jump.wait(timeout=30) == 255
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(jump.pid, signal.SIGKILL)
        assert fleet.host("h02").run("true").returncode == 0
    finally:
        fleet.bastion.resume()


def test_pause_makes_the_host_hang_and_resume_lets_it_finish(fleet: Fleet) -> None:
    host = fleet.host("h01")
    # a connection opened before the pause, served by sshd's forked children
    with subprocess.Popen([*host.ssh_argv(), "echo ready; read line; echo got $line"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as session:
        assert session.stdin is not None
        assert session.stdout is not None
        try:
            assert session.stdout.readline() == "ready\n"
            host.pause()
            session.stdin.write("x\n")
            session.stdin.flush()
            assert select.select([session.stdout], [], [], 0.5)[0] == []  # the open connection hangs
            started = time.monotonic()
            result = host.run("true", options=("-o", "ConnectTimeout=2"), timeout=10)  # a new one hangs too ...
            assert result.returncode == 255
            assert "timed out" in result.stderr
            assert 1.5 < time.monotonic() - started < 8  # ... until ConnectTimeout, not forever
            with subprocess.Popen([*host.ssh_argv(), "hostname"], stdout=subprocess.PIPE, text=True) as late:
                with pytest.raises(subprocess.TimeoutExpired):
                    late.wait(timeout=0.5)
                host.resume()
                assert late.communicate(timeout=10)[0] == "h01\n"
            out, _ = session.communicate(timeout=10)
            assert out == "got x\n"
            assert session.returncode == 0
        finally:
            host.resume()
            session.kill()


def test_stop_sshd_refuses_and_drops_connections_then_start_sshd(fleet: Fleet) -> None:
    host = fleet.host("h03")
    with subprocess.Popen([*host.ssh_argv(), "echo ready; sleep 30"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as session:
        assert session.stdout is not None
        assert session.stdout.readline() == "ready\n"
        old_pid = host.pid
        host.stop_sshd()
        assert not alive(old_pid)
        assert not host.alive
        assert session.wait(timeout=5) == 255  # the open connection dropped
    result = host.run("true")
    assert result.returncode == 255
    assert "Connection refused" in result.stderr
    host.start_sshd()
    assert host.pid != old_pid
    assert host.run("hostname").stdout == "h03\n"


def test_a_changed_host_key_is_refused(fleet: Fleet) -> None:
    host = fleet.host("h03")
    before = host.known_hosts_line
    after = host.new_host_key()
    assert after != before
    result = host.run("true")
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
    fleet.write_known_hosts()
    assert host.run("hostname").stdout == "h03\n"


def test_stop_leaves_nothing_running(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, names=["web-1", "web-2"], image_size_mb=32)
    fleet.start()
    try:
        assert f" {fleet.mountpoint} ext4 " in Path("/proc/mounts").read_text()
        web1, web2 = fleet.hosts
        assert web1.srv.is_relative_to(fleet.mountpoint)
        assert web1.run("hostname").stdout == "web-1\n"
        # an open session with a running command, and a paused host: stop() must still get rid of both
        session = subprocess.Popen([*web1.ssh_argv(), "echo ready; sleep 60"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert session.stdout is not None
        assert session.stdout.readline() == "ready\n"
        web2.pause()
        pids = web1.processes() | web2.processes()
        assert {web1.pid, web2.pid} <= pids
        assert len(web1.processes()) >= 3  # listener, the session's sshd, the shell/sleep
    finally:
        fleet.stop()
    assert [pid for pid in pids if alive(pid)] == []
    _, err = session.communicate(timeout=5)
    assert session.returncode == 255, err
    assert f" {fleet.mountpoint} " not in Path("/proc/mounts").read_text()
    assert not fleet.image.exists()
    fleet.stop()  # idempotent


def test_fleet_host_is_exported() -> None:
    assert FleetHost.__dataclass_fields__.keys() >= {"name", "port", "pid", "srv", "home"}
