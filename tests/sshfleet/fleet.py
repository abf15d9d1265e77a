"""Fleet and FleetHost: real sshd hosts on 127.0.0.1, each in its own mount and UTS namespace.

Layout under ``root`` (``root/fs`` instead of ``root`` for the host directories when ``image_size_mb`` is
given, on an ext4 image loop-mounted there)::

    client_key, client_key.pub    the controller's ed25519 key (also in every host's authorized_keys)
    known_hosts                   "[127.0.0.1]:PORT ssh-ed25519 ..." for every host
    ssh_config                    a Host entry per host name (use with ``ssh -F``)
    hosts/<name>/sshd_config      that host's sshd configuration
    hosts/<name>/ssh_host_ed25519_key(.pub), sshd.pid, sshd.log
    hosts/<name>/srv              bind-mounted over /srv inside the host
    hosts/<name>/home             bind-mounted over /root inside the host (only .ssh/authorized_keys)

Processes are tracked by PID: the sshd listener is the ``unshare`` child itself (``unshare`` and ``sh``
exec into sshd), and the processes serving connections are found through /proc (children of the listener,
and every process in the host's mount namespace, confirmed by its /srv being the host's directory).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
FAST_KEX = "curve25519-sha256"
FAST_CIPHERS = "aes128-gcm@openssh.com"
POLL = 0.02
BIND_RETRIES = 5
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class FleetError(RuntimeError):
    """The fleet could not be started (or a host could not be restarted); the message says why."""


def missing_requirements() -> list[str]:
    """What this machine lacks to run a fleet (empty when it can); for pytest skip reasons."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (unshare -m, mount and sshd need it)")
    if not os.access(SSHD, os.X_OK):
        missing.append(f"{SSHD} (apt-get install openssh-server)")
    for tool, package in (("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"), ("unshare", "util-linux"),
                          ("mount", "mount"), ("hostname", "hostname")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    return missing


# ---------------------------------------------------------------------------------------------- /proc


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    state = _stat(pid)
    return state is not None and state[0] not in "ZX"


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _listening_sockets() -> dict[int, str]:
    """Port -> socket inode of the TCP sockets listening on 127.0.0.1."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        address, _, port = cols[1].partition(":")
        if address == "0100007F" and cols[3] == "0A":
            found[int(port, 16)] = cols[9]
    return found


def _owns_socket(pid: int, inode: str) -> bool:
    target = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


class _ProcessTable:
    """One scan of /proc: parent -> children and mount namespace -> members."""

    def __init__(self) -> None:
        self.children: dict[int, list[int]] = {}
        self.ppid: dict[int, int] = {}
        self.by_ns: dict[str, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            state = _stat(pid)
            if state is None or state[0] in "ZX":
                continue
            self.children.setdefault(state[1], []).append(pid)
            self.ppid[pid] = state[1]
            ns = _mnt_ns(pid)
            if ns is not None:
                self.by_ns.setdefault(ns, []).append(pid)

    def descendants(self, pid: int) -> set[int]:
        found: set[int] = set()
        stack = [pid]
        while stack:
            for child in self.children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for port 0 on 127.0.0.1 (all held at once, so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _run(argv: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FleetError(f"{what} failed (exit {result.returncode}): {shlex.join(argv)}\n{result.stderr.strip()}")
    return result


def _quote_conf(value: object) -> str:
    """A value for ssh_config/sshd_config: double-quoted when it holds a space."""
    text = str(value)
    if any(c in text for c in ' \t"#'):
        if '"' in text:
            raise FleetError(f"cannot put {text!r} in an OpenSSH config file")
        return f'"{text}"'
    return text


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file atomically (rename), so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- hosts


@dataclass(eq=False)
class FleetHost:
    """One sshd host. ``srv`` and ``home`` are its /srv and /root as seen from the controller."""

    name: str
    port: int
    pid: int
    srv: Path
    home: Path
    dir: Path
    _fleet: Fleet = field(repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _namespaces: list[str] = field(default_factory=list, repr=False)
    _srv_id: tuple[int, int] = field(default=(0, 0), repr=False)
    _exec_seen: bool = field(default=False, repr=False)
    _log_offset: int = field(default=0, repr=False)

    # -- files

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        """sshd's stderr (LogLevel ERROR): why it refused or died."""
        return self.dir / "sshd.log"

    @property
    def known_hosts_line(self) -> str:
        """This host's line for a known_hosts file (its current host key and port)."""
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}"

    @property
    def alive(self) -> bool:
        """Whether its sshd listener is running (paused counts as running)."""
        return self._proc is not None and self._proc.poll() is None

    # -- using it

    def ssh_argv(self, *options: str) -> list[str]:
        """``ssh -F <fleet ssh_config> [options] -- <name>``: append the remote command."""
        return ["ssh", "-F", str(self._fleet.ssh_config), *options, "--", self.name]

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        timeout: float | None = 30,
        input: str | None = None,
        options: Sequence[str] = (),
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (a shell string, or an argv that is quoted) on the host with the system ``ssh -F``."""
        command = cmd if isinstance(cmd, str) else shlex.join(cmd)
        return subprocess.run(
            [*self.ssh_argv(*options), command],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    # -- breaking it

    def processes(self) -> set[int]:
        """The listener and every process serving its connections (sessions, commands), by PID."""
        return self._fleet._processes([self], _ProcessTable())[self.name]

    def stop_sshd(self, *, connections: bool = True) -> None:
        """SIGKILL the sshd: new connections are refused. With ``connections`` (the default) the processes
        serving open connections, and the commands they run, are killed too (all at once), so open
        connections drop mid-command, as when the host dies. (Where PID 1 does not reap orphans, as in some
        containers, the killed sessions' processes stay behind as zombies: harmless, but visible in ps.)"""
        if connections:
            table = _ProcessTable()
            pids = self._fleet._processes([self], table)[self.name]
        else:
            pids = {self.pid} if self.alive else set()
        _signal(pids, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=5)
        _wait_gone(pids - {self.pid}, time.monotonic() + 5)

    def start_sshd(self, *, timeout: float = 10) -> None:
        """Start its sshd again (same port, config and host key) after ``stop_sshd()``; waits until it listens."""
        if self.alive:
            raise FleetError(f"{self.name}: sshd is already running (pid {self.pid})")
        self._fleet._launch(self)
        self._fleet._wait_listening([self], time.monotonic() + timeout)

    def restart_sshd(self) -> None:
        """Restart the listener (open connections carry on), e.g. after ``new_host_key()``."""
        self.stop_sshd(connections=False)
        self.start_sshd()

    def new_host_key(self, *, restart: bool = True) -> str:
        """Give the host a new ed25519 host key (the fleet's known_hosts still holds the old one: a "changed
        host key"); restarts sshd with it unless told not to. Returns the new known_hosts line."""
        for path in (self.host_key, self.host_key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(self.host_key)],
             "ssh-keygen (host key)")
        if restart:
            self.restart_sshd()
        return self.known_hosts_line

    def pause(self) -> None:
        """SIGSTOP the listener and every process serving its connections: the host hangs (TCP connects
        still complete, nothing answers)."""
        if self.alive:
            os.kill(self.pid, signal.SIGSTOP)
        stopped: set[int] = set()
        for _ in range(5):  # processes may fork while we stop them: repeat until nothing new appears
            pids = self.processes() - stopped
            if not pids:
                break
            _signal(pids, signal.SIGSTOP)
            stopped |= pids
        deadline = time.monotonic() + 2  # SIGSTOP is asynchronous: return once all of them are stopped
        while time.monotonic() < deadline:
            states = [_stat(pid) for pid in stopped]
            if all(state is None or state[0] in "TtZX" for state in states):
                break
            time.sleep(POLL / 4)

    def resume(self) -> None:
        """SIGCONT everything ``pause()`` stopped."""
        _signal(self.processes(), signal.SIGCONT)


def _wait_gone(pids: Iterable[int], deadline: float) -> set[int]:
    """Wait until none of ``pids`` is alive (zombies count as gone); return those still alive."""
    left = set(pids)
    while True:
        left = {pid for pid in left if _alive(pid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)


# ---------------------------------------------------------------------------------------------- fleet


class Fleet:
    """N real sshd hosts (plus an optional bastion) on 127.0.0.1; see the module docstring for the layout.

    ``with Fleet(tmp_path, 10) as fleet: ...`` or ``fleet.start()`` / ``fleet.stop()``. Needs root.
    """

    def __init__(
        self,
        root: Path | str,
        count: int | None = None,
        *,
        names: Sequence[str] | None = None,
        bastion: bool = False,
        fast_crypto: bool = True,
        image_size_mb: int | None = None,
        ready_timeout: float | None = None,
    ) -> None:
        if names is None:
            if count is None or count < 1:
                raise ValueError("give a host count >= 1 or names")
            width = max(2, len(str(count)))
            names = [f"h{i:0{width}d}" for i in range(1, count + 1)]
        elif count is not None and count != len(names):
            raise ValueError(f"count={count} but {len(names)} names given")
        names = list(names)
        for name in names:
            if not NAME.fullmatch(name):
                raise ValueError(f"host name {name!r} must match {NAME.pattern}")
        if len(set(names)) != len(names):
            raise ValueError("host names must be distinct")
        if bastion and "bastion" in names:
            raise ValueError("'bastion' is the bastion's name; give region hosts other names")
        if not names:
            raise ValueError("a fleet needs at least one host")
        self.root = Path(root).resolve()
        self.names = names
        self.with_bastion = bastion
        self.fast_crypto = fast_crypto
        self.image_size_mb = image_size_mb
        # ~10 s; more for big fleets, where readiness is CPU-bound (each check is one ssh handshake, about
        # 0.17 s of machine CPU with OpenSSH's default key exchange on two cores)
        total = len(names) + (1 if bastion else 0)
        self.ready_timeout = ready_timeout if ready_timeout is not None else max(10.0, 0.25 * total)
        self.ssh_config = self.root / "ssh_config"
        self.known_hosts = self.root / "known_hosts"
        self.client_key = self.root / "client_key"
        self.image = self.root / "fs.img"
        self.mountpoint = self.root / "fs"
        self.hosts: list[FleetHost] = []
        self.bastion: FleetHost | None = None
        self.timings: dict[str, float] = {}
        self._mounted = False
        self._started = False
        self._lock = threading.Lock()

    # -- public API

    @property
    def all_hosts(self) -> list[FleetHost]:
        """The hosts and the bastion (if any)."""
        return [*self.hosts, *([self.bastion] if self.bastion else [])]

    def host(self, name: str) -> FleetHost:
        for host in self.all_hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} in this fleet (hosts: {', '.join(h.name for h in self.all_hosts)})")

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Fleet:
        if self._started:
            raise FleetError("fleet already started")
        missing = missing_requirements()
        if missing:
            raise FleetError("cannot start an sshd fleet; missing: " + "; ".join(missing))
        self._started = True
        atexit.register(self.stop)
        began = time.monotonic()
        try:
            self._prepare()
            self.timings["prepare"] = time.monotonic() - began
            for host in self.all_hosts:
                self._launch(host)
            self._wait_listening(self.all_hosts, time.monotonic() + self.ready_timeout)
            self.timings["listening"] = time.monotonic() - began
            self.write_known_hosts()
            self.write_ssh_config()
            self._wait_ssh(self.all_hosts, time.monotonic() + self.ready_timeout)
            self.timings["ready"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stop every host by PID (SIGTERM, then SIGKILL after ``timeout``) and unmount the image."""
        if not self._started:
            return
        atexit.unregister(self.stop)
        try:
            self._terminate(self.all_hosts, timeout)
        finally:
            self._started = False
            self._unmount()

    def _terminate(self, hosts: list[FleetHost], timeout: float) -> None:
        """SIGCONT, then SIGTERM from the leaves up (each parent gets to reap its children: killed parents
        leave their children to PID 1, which in some containers never reaps them), then a sweep for anything
        left or new, then SIGKILL for what outlives ``timeout``."""
        deadline = time.monotonic() + timeout
        table = _ProcessTable()
        pids = set().union(*self._processes(hosts, table).values())
        _signal(pids, signal.SIGCONT)  # a paused host cannot act on SIGTERM

        def depth(pid: int) -> int:
            n = 0
            while (pid := table.ppid.get(pid, 0)) in pids:
                n += 1
            return n

        def settled(pid: int) -> bool:  # gone, or a zombie that none of ours will reap
            state = _stat(pid)
            return state is None or (state[0] in "ZX" and state[1] not in pids)

        def reap() -> None:
            for host in hosts:
                if host._proc is not None:
                    host._proc.poll()

        levels: dict[int, list[int]] = {}
        for pid in pids:
            levels.setdefault(depth(pid), []).append(pid)
        for level in sorted(levels, reverse=True):
            _signal(levels[level], signal.SIGTERM)
            level_deadline = min(deadline, time.monotonic() + 1.0)
            while True:
                reap()
                if all(settled(pid) for pid in levels[level]) or time.monotonic() >= level_deadline:
                    break
                time.sleep(POLL / 4)
        signalled = set(pids)
        sig = signal.SIGTERM
        while True:
            reap()
            current = set().union(*self._processes(hosts, _ProcessTable()).values())
            alive = {pid for pid in signalled | current if _alive(pid)}
            if not alive:
                break
            if time.monotonic() >= deadline:
                if sig == signal.SIGKILL:
                    raise FleetError(f"processes survived SIGKILL: {sorted(alive)}")
                sig, deadline = signal.SIGKILL, time.monotonic() + 5
                _signal(alive, sig)
            else:
                _signal(current - signalled if sig == signal.SIGTERM else alive, sig)
            signalled |= current
            time.sleep(POLL)
        for host in hosts:
            if host._proc is not None:
                host._proc.wait(timeout=5)

    def write_known_hosts(self) -> None:
        """(Re)write known_hosts from every host's current port and host key."""
        with self._lock:
            _write(self.known_hosts, "".join(f"{h.known_hosts_line}\n" for h in self.all_hosts), 0o644)

    def write_ssh_config(self) -> None:
        """(Re)write the client ssh_config: a Host entry per host, every option spelled out in each."""
        common = [
            "User root",
            f"IdentityFile {_quote_conf(self.client_key)}",
            "IdentitiesOnly yes",
            f"UserKnownHostsFile {_quote_conf(self.known_hosts)}",
            "GlobalKnownHostsFile /dev/null",
            "StrictHostKeyChecking yes",
            "BatchMode yes",
            "LogLevel ERROR",
        ]
        if self.fast_crypto:
            common += [f"KexAlgorithms {FAST_KEX}", f"Ciphers {FAST_CIPHERS}"]
        lines = ["# written by tests/sshfleet; use with ssh -F"]
        for host in self.all_hosts:
            lines += [f"Host {host.name}", "    HostName 127.0.0.1", f"    Port {host.port}"]
            lines += [f"    {option}" for option in common]
        with self._lock:
            _write(self.ssh_config, "\n".join(lines) + "\n")

    # -- starting

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        base = self.root
        if self.image_size_mb is not None:
            self._mount_image()
            base = self.mountpoint
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        Path("/srv").mkdir(exist_ok=True)
        if not self.client_key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sshfleet-client", "-f",
                  str(self.client_key)], "ssh-keygen (client key)")
        client_pub = self.client_key.with_suffix(".pub").read_text()

        names = [*self.names, *(["bastion"] if self.with_bastion else [])]
        ports = _free_ports(len(names))
        hosts = []
        keygens = []
        for name, port in zip(names, ports, strict=True):
            hdir = base / "hosts" / name
            host = FleetHost(name=name, port=port, pid=0, srv=hdir / "srv", home=hdir / "home", dir=hdir,
                             _fleet=self)
            (host.home / ".ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
            host.srv.mkdir(exist_ok=True)
            _write(host.home / ".ssh" / "authorized_keys", client_pub)
            st = host.srv.stat()
            host._srv_id = (st.st_dev, st.st_ino)
            if not host.host_key.exists():
                keygens.append(subprocess.Popen(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(host.host_key)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            hosts.append(host)
        for proc in keygens:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise FleetError(f"ssh-keygen (host key) failed: {err.decode(errors='replace').strip()}")
        if self.with_bastion:
            *hosts, self.bastion = hosts
        self.hosts = hosts

    def _write_sshd_config(self, host: FleetHost) -> None:
        lines = [
            "# written by tests/sshfleet",
            "ListenAddress 127.0.0.1",
            f"Port {host.port}",
            f"HostKey {_quote_conf(host.host_key)}",
            f"PidFile {_quote_conf(host.dir / 'sshd.pid')}",
            f"AuthorizedKeysFile {_quote_conf(host.home / '.ssh' / 'authorized_keys')}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "MaxStartups 200:30:400",
            "MaxSessions 50",
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel ERROR",
            f"Subsystem sftp {SFTP_SERVER}",
        ]
        if self.fast_crypto:
            lines += [f"KexAlgorithms {FAST_KEX}", f"Ciphers {FAST_CIPHERS}"]
        _write(host.sshd_config, "\n".join(lines) + "\n")

    def _launch(self, host: FleetHost) -> None:
        """Start the host's sshd in new mount and UTS namespaces; unshare and sh exec into it (same PID)."""
        self._write_sshd_config(host)
        q = shlex.quote
        script = (
            f"set -e; hostname {q(host.name)}; mount --bind {q(str(host.srv))} /srv; "
            f"mount --bind {q(str(host.home))} /root; cd /; "
            f"exec {SSHD} -D -e -f {q(str(host.sshd_config))}"
        )
        with host.log.open("ab") as log:
            host._log_offset = log.tell()
            host._proc = subprocess.Popen(
                ["unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=HOST_ENV, start_new_session=True,
            )
        host.pid = host._proc.pid
        host._exec_seen = False

    def _wait_listening(self, hosts: list[FleetHost], deadline: float) -> None:
        """Wait until each host's own sshd (checked by PID and socket inode) listens; move a host whose port
        was taken in the meantime to another port."""
        waiting = list(hosts)
        retries = dict.fromkeys((h.name for h in hosts), 0)
        while waiting:
            sockets = _listening_sockets()
            for host in list(waiting):
                assert host._proc is not None
                if host._proc.poll() is not None:
                    log = host.log.read_bytes()[host._log_offset :].decode(errors="replace")
                    if ("Address already in use" in log or "Cannot bind" in log) and retries[host.name] < BIND_RETRIES:
                        retries[host.name] += 1
                        host.port = _free_ports(1)[0]
                        self._launch(host)
                        continue
                    raise FleetError(f"{host.name}: sshd exited with status {host._proc.returncode}:\n{log[-2000:]}")
                if not host._exec_seen and not self._after_exec(host):
                    continue
                inode = sockets.get(host.port)
                if inode is not None and _owns_socket(host.pid, inode):
                    waiting.remove(host)
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise FleetError(f"sshd did not listen in time on: {', '.join(h.name for h in waiting)}")
            time.sleep(POLL)

    def _after_exec(self, host: FleetHost) -> bool:
        """Once the child has exec'd sshd, record its mount namespace; False while it has not yet."""
        try:
            exe = os.readlink(f"/proc/{host.pid}/exe")
            cmdline = Path(f"/proc/{host.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        if exe != SSHD or "sshd" not in cmdline:
            return False
        ns = _mnt_ns(host.pid)
        if ns is None or ns == _mnt_ns(os.getpid()):
            return False
        if ns not in host._namespaces:
            host._namespaces.append(ns)
        host._exec_seen = True
        return True

    def _wait_ssh(self, hosts: list[FleetHost], deadline: float) -> None:
        """Concurrently, until ``ssh -F ssh_config <name> true`` succeeds on every host."""

        def ready(host: FleetHost) -> str | None:
            last = ""
            while True:
                left = deadline - time.monotonic()
                try:
                    result = host.run("true", timeout=max(left, 0.5), options=("-o", "ConnectTimeout=5"))
                    if result.returncode == 0:
                        return None
                    last = result.stderr.strip()
                except subprocess.TimeoutExpired:
                    last = "timed out"
                if time.monotonic() >= deadline:
                    return f"{host.name}: {last}"
                time.sleep(POLL * 2)

        with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
            failures = [f for f in pool.map(ready, hosts) if f]
        if failures:
            raise FleetError("hosts not reachable over ssh:\n" + "\n".join(failures))

    # -- processes

    def _processes(self, hosts: list[FleetHost], table: _ProcessTable) -> dict[str, set[int]]:
        """Per host: its listener, the listener's descendants, and every process in one of its mount
        namespaces whose /srv is the host's srv directory (guards against a reused namespace id)."""
        found: dict[str, set[int]] = {}
        for host in hosts:
            pids: set[int] = set()
            if host.alive:
                pids.add(host.pid)
                pids |= table.descendants(host.pid)
            for ns in host._namespaces:
                members = table.by_ns.get(ns, [])
                if members and self._is_host_ns(host, members):
                    pids.update(members)
            found[host.name] = pids
        return found

    @staticmethod
    def _is_host_ns(host: FleetHost, members: list[int]) -> bool:
        for pid in members:
            try:
                st = os.stat(f"/proc/{pid}/root/srv")
            except OSError:
                continue
            return (st.st_dev, st.st_ino) == host._srv_id
        return False

    # -- the image

    def _mount_image(self) -> None:
        assert self.image_size_mb is not None
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        try:
            _run(["truncate", "-s", f"{self.image_size_mb}M", str(self.image)], "creating the image file")
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)], "mkfs.ext4")
            _run(["mount", "-o", "loop,noatime", str(self.image), str(self.mountpoint)], "loop-mounting the image")
        except FleetError as exc:
            self.image.unlink(missing_ok=True)
            raise FleetError(f"image_size_mb={self.image_size_mb}: cannot put the hosts on an ext4 image "
                             f"(it needs root, mkfs.ext4 and a free loop device): {exc}") from exc
        self._mounted = True

    def _unmount(self) -> None:
        if not self._mounted:
            return
        deadline = time.monotonic() + 3
        while True:
            result = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, text=True, check=False)
            if result.returncode == 0:
                break
            if time.monotonic() >= deadline:
                _run(["umount", "-l", str(self.mountpoint)], "unmounting the image")
                break
            time.sleep(0.1)
        self._mounted = False
        self.image.unlink(missing_ok=True)
