"""The same job done by each tool: ship a release to every host, unpack it complete, switch `current`
atomically, prune to the newest KEEP releases, restart (write a marker) — and roll back.

Each tool turns a Step into one controller command (argv + env) that the benchmark runs and measures:

- conveyor:  ``conveyor deploy prod --release ID --yes --json`` / ``conveyor rollback prod --yes --json``
- floor:     one ``ssh host 'mkdir … && tar -xzf - … && mv … && ln -sfn … && mv -T … && prune && restart'``
             per host, all in parallel, the tarball on stdin (the fast KexAlgorithms/Ciphers ssh_config)
- floor-default: the same with OpenSSH's default algorithms (to show what the tuning is worth)
- rsync:     ``rsync -a --link-dest=<previous release>`` per host in parallel, then the switch over ssh
- pyinfra:   ``files.put`` of the tarball + ``server.shell`` (unpack, switch, prune, restart), ``--parallel N``
- ansible:   ``copy`` + ``shell``, forks = N, pipelining, ControlPersist

pyinfra and ansible-core live in their own venv under the cache directory (never project dependencies).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEPLOY_TO = "/srv/app"
KEEP = 2
FAST_SSH_OPTIONS = ("KexAlgorithms curve25519-sha256", "Ciphers aes128-gcm@openssh.com")
RESTART_MARKER = "restarted"


@dataclass(frozen=True)
class Release:
    """One release: its id, its files on the controller, its tarball (Conveyor's, shared by every tool)."""

    id: str
    name: str  # old1 | old2 | new | small
    dir: Path
    tarball: Path | None
    manifest: dict[str, dict[str, Any]] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One thing to do to the whole fleet."""

    scenario: str  # new | small | rollback
    kind: str  # deploy | rollback
    target: Release  # what `current` must point at afterwards
    previous: Release  # what it points at before


@dataclass
class Site:
    """The fleet as the tools see it."""

    work: Path  # this fleet's working directory (configs, logs)
    names: list[str]
    ports: dict[str, int]
    client_key: Path
    known_hosts: Path
    ssh_config_default: Path  # the harness's ssh_config (OpenSSH's default algorithms)
    ssh_config_fast: Path  # the same plus FAST_SSH_OPTIONS
    cache: Path

    @property
    def count(self) -> int:
        return len(self.names)


@dataclass
class Command:
    """A controller command to measure."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


class ToolUnavailable(Exception):
    """The tool cannot run here; the message says why (recorded in the results)."""


def write_fast_ssh_config(default: Path, dest: Path) -> None:
    """The harness's ssh_config with the fast key exchange and cipher added to every host entry."""
    lines = []
    for line in default.read_text().splitlines():
        lines.append(line)
        if line.startswith("Host "):
            lines += [f"    {option}" for option in FAST_SSH_OPTIONS]
    dest.write_text("\n".join(lines) + "\n")
    dest.chmod(0o600)


# -------------------------------------------------------------------------------------- host scripts


def remote_finish(release: str) -> str:
    """Switch `current` to `release` atomically, prune to the KEEP newest releases, restart (marker)."""
    d, r = DEPLOY_TO, shlex.quote(release)
    return (f'ln -sfn releases/{r} {d}/current.tmp && mv -T {d}/current.tmp {d}/current && '
            f'cd {d}/releases && ls -1 | sort | head -n -{KEEP} | '
            f'while read -r x; do [ "$x" = {r} ] || rm -rf -- "$x"; done && '
            f"printf '%s\\n' {r} > {d}/{RESTART_MARKER}")


def remote_switch(release: str) -> str:
    """Rollback: switch `current` back and restart."""
    d, r = DEPLOY_TO, shlex.quote(release)
    return (f'test -d {d}/releases/{r} && ln -sfn releases/{r} {d}/current.tmp && '
            f'mv -T {d}/current.tmp {d}/current && printf \'%s\\n\' {r} > {d}/{RESTART_MARKER}')


def remote_unpack(release: str, source: str) -> str:
    """Unpack a tarball (`-` for stdin, or a path) into incoming/, then rename it into releases/."""
    d, r = DEPLOY_TO, shlex.quote(release)
    return (f'mkdir -p {d}/releases {d}/incoming && t={d}/incoming/{r}.$$ && mkdir "$t" && '
            f'tar -xzf {shlex.quote(source)} -C "$t" && mv -T "$t" {d}/releases/{r}')


def parallel_script(lines_per_host: dict[str, str], logs: Path) -> str:
    """A POSIX sh script that runs one command line per host in the background, waits for each, and fails
    (listing the hosts) when any failed."""
    logs.mkdir(parents=True, exist_ok=True)
    out = ["#!/bin/sh", f"cd {shlex.quote(str(logs))} || exit 2", "pids="]
    for host, line in lines_per_host.items():
        out.append(f"( {line} ) > {host}.log 2>&1 & pids=\"$pids $!:{host}\"")
    out += [
        "fail=0",
        "for p in $pids; do",
        '  h=${p#*:}',
        '  wait "${p%%:*}" || { echo "$h failed: $(tail -n 3 "$h.log" | tr "\\n" " ")"; fail=1; }',
        "done",
        "exit $fail",
    ]
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------------------------------- tools


class Tool:
    name = "tool"
    description = ""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.dir = site.work / self.name
        self.dir.mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        """Raise ToolUnavailable when the tool cannot run here."""

    def version(self) -> str:
        return ""

    def begin_run(self, run: int) -> None:
        """Called on a freshly seeded fleet before a run's steps."""

    def command(self, step: Step, run: int) -> Command:
        raise NotImplementedError

    def after(self, step: Step) -> None:
        """Called after each step, outside the measurement (e.g. to close connections it left open)."""

    def check_output(self, stdout: str, stderr: str, step: Step) -> str | None:
        """A problem the tool reported even though it exited 0 (None when fine)."""
        return None


class Conveyor(Tool):
    name = "conveyor"
    description = ("conveyor deploy/rollback as configured by default (asyncssh, one connection per host; "
                   "`artifact.compression: auto`: stored zstd, the same tar stream, for hosts that have zstd)")

    compression = "auto"
    client: str | None = None  # ssh.client; None: the default

    def __init__(self, site: Site, executable: str, store: Path) -> None:
        super().__init__(site)
        self.executable = executable
        self.store = store
        self.state: Path | None = None
        self.profile_dir: Path | None = None  # set: run under cProfile, one .prof file per step
        self.timeline = False  # set: run through bench/conveyor_timeline.py (timestamps every engine event)
        self.pythonpath: Path | None = None  # set: import Conveyor from this snapshot of src/ (--conveyor-ref)
        self.config = self.dir / "conveyor.yml"
        self.write_config()

    def write_config(self) -> None:
        hosts = [{"name": n, "address": "127.0.0.1", "port": self.site.ports[n]} for n in self.site.names]
        settings = {
            "app": "bench",
            "artifact": {"path": "unused", "store": str(self.store), "compression": self.compression},
            "deploy_to": DEPLOY_TO,
            "keep_releases": KEEP,
            "ssh": {"user": "root", "identity_file": str(self.site.client_key),
                    "known_hosts_file": str(self.site.known_hosts), "max_concurrency": self.site.count,
                    "connect_timeout": "30s", "command_timeout": "10m",
                    **({"client": self.client} if self.client else {})},
            "roles": {"web": {
                "restart": f'printf "%s\\n" "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/{RESTART_MARKER}"',
                "canary": 0, "batch": "100%"}},
            "environments": {"prod": {"transport": "ssh", "regions": {"local": {"hosts": {"web": hosts}}}}},
        }
        self.config.write_text(json.dumps(settings, indent=2))  # JSON is YAML

    def version(self) -> str:
        from importlib import metadata

        try:
            return f"conveyor-deploy {metadata.version('conveyor-deploy')}"
        except metadata.PackageNotFoundError:
            return ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        assert self.state is not None
        env.update(CONVEYOR_STATE_URL=f"sqlite:///{self.state}", CONVEYOR_USER="bench", NO_COLOR="1")
        if self.pythonpath is not None:
            env["PYTHONPATH"] = str(self.pythonpath)
        return env

    def begin_run(self, run: int) -> None:
        self.state = self.dir / f"state-run{run}.db"
        self.state.unlink(missing_ok=True)

    def command(self, step: Step, run: int) -> Command:
        if step.kind == "deploy":
            args = ["deploy", "prod", "--release", step.target.id, "--yes", "--json"]
        else:
            args = ["rollback", "prod", "--yes", "--json"]
        argv = [self.executable, "-c", str(self.config), *args]
        if self.timeline:
            argv = [sys.executable, str(Path(__file__).with_name("conveyor_timeline.py")),
                    str(self.timeline_path(step, run)), *argv[1:]]
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            out = self.profile_dir / f"conveyor-{self.site.count}-{step.scenario}-run{run}.prof"
            script = argv[1:] if argv[0] == sys.executable else argv  # cProfile runs a script, not python
            argv = [sys.executable, "-m", "cProfile", "-o", str(out), *script]
        return Command(argv, env=self.env(), cwd=self.dir)

    def timeline_path(self, step: Step, run: int) -> Path:
        return self.dir / f"timeline-run{run}-{step.scenario}.json"

    def check_output(self, stdout: str, stderr: str, step: Step) -> str | None:
        try:
            doc = json.loads(stdout)
        except ValueError:
            return f"stdout is not one JSON document: {stdout[-300:]!r} {stderr[-300:]!r}"
        if doc.get("status") != "succeeded":
            return f"status {doc.get('status')!r}: {json.dumps(doc)[-600:]}"
        if doc.get("release") != step.target.id:
            return f"release {doc.get('release')!r}, expected {step.target.id}"
        return None


class ConveyorOpenssh(Conveyor):
    name = "conveyor-openssh"
    description = "conveyor with `ssh.client: openssh` (one multiplexed OpenSSH master per host)"
    client = "openssh"


class ConveyorGzip(Conveyor):
    name = "conveyor-gzip"
    description = "conveyor with `artifact.compression: gzip` (the tarball the other tools ship)"
    compression = "gzip"


# What `conveyor-stack` asks every host in its probe step: four components as a team would name them.
STACK = {
    "os": {"probe": ". /etc/os-release && echo \"$ID-$VERSION_ID\""},
    "kernel": {"probe": "uname -r"},
    "tar": {"probe": "tar --version | head -n 1"},
    "passwd": {"probe": "sha256sum /etc/passwd | cut -c1-12"},
}


class ConveyorStack(Conveyor):
    name = "conveyor-stack"
    description = "conveyor with `consistency:` (four component probes in each host's probe step)"

    def write_config(self) -> None:
        super().write_config()
        settings = json.loads(self.config.read_text())
        settings["consistency"] = {"components": STACK}
        self.config.write_text(json.dumps(settings, indent=2))


class Floor(Tool):
    name = "floor"
    description = "plain OpenSSH, one `ssh host 'tar -x …'` per host in parallel (fast kex/cipher)"
    fast = True

    @property
    def ssh_config(self) -> Path:
        return self.site.ssh_config_fast if self.fast else self.site.ssh_config_default

    def version(self) -> str:
        done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False, timeout=30)
        return done.stderr.strip()

    def _script(self, step: Step, run: int, per_host: str) -> Command:
        script = self.dir / f"run{run}-{step.scenario}.sh"
        logs = self.dir / f"logs-run{run}-{step.scenario}"
        script.write_text(parallel_script({h: per_host.replace("@HOST@", h) for h in self.site.names}, logs))
        return Command(["sh", str(script)])

    def command(self, step: Step, run: int) -> Command:
        ssh = f"ssh -F {shlex.quote(str(self.ssh_config))} --"
        if step.kind == "rollback":
            line = f"{ssh} @HOST@ {shlex.quote(remote_switch(step.target.id))}"
        else:
            assert step.target.tarball is not None
            remote = f"{remote_unpack(step.target.id, '-')} && {remote_finish(step.target.id)}"
            line = f"{ssh} @HOST@ {shlex.quote(remote)} < {shlex.quote(str(step.target.tarball))}"
        return self._script(step, run, line)


class FloorDefault(Floor):
    name = "floor-default"
    description = "the floor with OpenSSH's default key exchange and cipher"
    fast = False


class Rsync(Floor):
    name = "rsync"
    description = "rsync -a --link-dest=<previous release> per host in parallel, then the switch over ssh"

    def check(self) -> None:
        if shutil.which("rsync") is None:
            raise ToolUnavailable("rsync is not installed (apt-get install rsync)")

    def version(self) -> str:
        done = subprocess.run(["rsync", "--version"], capture_output=True, text=True, check=False, timeout=30)
        return done.stdout.splitlines()[0] if done.stdout else ""

    def command(self, step: Step, run: int) -> Command:
        cfg = shlex.quote(str(self.ssh_config))
        ssh = f"ssh -F {cfg} --"
        if step.kind == "rollback":
            return self._script(step, run, f"{ssh} @HOST@ {shlex.quote(remote_switch(step.target.id))}")
        d, r = DEPLOY_TO, step.target.id
        tmp = f"{d}/incoming/{r}.rsync"
        rsync = ["rsync", "-a", "--delete", f"--rsync-path=mkdir -p {d}/incoming && rsync",
                 f"--link-dest={d}/releases/{step.previous.id}", "-e", f"ssh -F {cfg}",
                 f"{step.target.dir}/", f"@HOST@:{tmp}/"]
        finish = f"mv -T {tmp} {d}/releases/{r} && {remote_finish(r)}"
        line = f"{shlex.join(rsync)} && {ssh} @HOST@ {shlex.quote(finish)}"
        return self._script(step, run, line)


# ------------------------------------------------------------------------------- pyinfra and ansible


def tools_venv(cache: Path, log: Path) -> Path:
    """The venv with pyinfra and ansible-core (created and installed on first use); raises ToolUnavailable."""
    venv = cache / "tools-venv"
    bin_dir = venv / "bin"
    if (bin_dir / "pyinfra").exists() and (bin_dir / "ansible-playbook").exists():
        return venv
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True,
                       timeout=300)
        with open(log, "w") as out:
            subprocess.run([str(bin_dir / "pip"), "install", "--disable-pip-version-check", "pyinfra",
                            "ansible-core"], check=True, stdout=out, stderr=subprocess.STDOUT, timeout=1200)
    except (OSError, subprocess.SubprocessError) as exc:
        tail = log.read_text()[-1500:] if log.exists() else ""
        raise ToolUnavailable(f"cannot install pyinfra and ansible-core into {venv}: {exc}\n{tail}") from exc
    return venv


class _VenvTool(Tool):
    binary = ""

    def __init__(self, site: Site, venv: Path | None, unavailable: str | None) -> None:
        super().__init__(site)
        self.venv = venv
        self.unavailable = unavailable

    def check(self) -> None:
        if self.unavailable:
            raise ToolUnavailable(self.unavailable)
        assert self.venv is not None
        if not (self.venv / "bin" / self.binary).exists():
            raise ToolUnavailable(f"{self.binary} is not in {self.venv}")

    def exe(self, name: str | None = None) -> str:
        assert self.venv is not None
        return str(self.venv / "bin" / (name or self.binary))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        assert self.venv is not None
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        env.pop("PYTHONPATH", None)
        return env


class Pyinfra(_VenvTool):
    name = "pyinfra"
    description = "pyinfra: files.put (SFTP) + server.shell, --parallel N"
    binary = "pyinfra"

    def version(self) -> str:
        done = subprocess.run([self.exe("python"), "-c", "import pyinfra.version as v; print(v.__version__)"],
                              capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            done = subprocess.run([self.exe("pip"), "show", "pyinfra"], capture_output=True, text=True,
                                  check=False, timeout=60)
            return next((x.split(":", 1)[1].strip() for x in done.stdout.splitlines()
                         if x.startswith("Version:")), "")
        return done.stdout.strip()

    def begin_run(self, run: int) -> None:
        hosts = [(n, {"ssh_hostname": "127.0.0.1", "ssh_port": self.site.ports[n], "ssh_user": "root",
                      "ssh_key": str(self.site.client_key), "ssh_known_hosts_file": str(self.site.known_hosts),
                      "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False,
                      "ssh_look_for_keys": False}) for n in self.site.names]
        (self.dir / "inventory.py").write_text(f"hosts = {hosts!r}\n")

    def command(self, step: Step, run: int) -> Command:
        r = step.target.id
        ops = ["from pyinfra.operations import files, server", ""]
        if step.kind == "deploy":
            assert step.target.tarball is not None
            remote_tar = f"{DEPLOY_TO}/incoming/{r}.tar.gz"
            ops += [
                f"files.put(name='upload {r}', src={str(step.target.tarball)!r}, dest={remote_tar!r}, "
                "create_remote_dir=True)",
                f"server.shell(name='unpack, switch, prune, restart', commands=["
                f"{(remote_unpack(r, remote_tar) + ' && rm -f ' + remote_tar + ' && ' + remote_finish(r))!r}])",
            ]
        else:
            ops.append(f"server.shell(name='switch back, restart', commands=[{remote_switch(r)!r}])")
        deploy = self.dir / f"run{run}-{step.scenario}.py"
        deploy.write_text("\n".join(ops) + "\n")
        argv = [self.exe(), "-y", "--parallel", str(self.site.count), "--no-wait", "inventory.py", deploy.name]
        return Command(argv, env=self.env(), cwd=self.dir)


class Ansible(_VenvTool):
    name = "ansible"
    description = "ansible-core: copy + shell, forks = N, pipelining, ControlPersist"
    binary = "ansible-playbook"

    def version(self) -> str:
        done = subprocess.run([self.exe(), "--version"], capture_output=True, text=True, check=False,
                              timeout=60, env=self.env())
        return done.stdout.splitlines()[0] if done.stdout else done.stderr.strip()[-200:]

    @property
    def control_dir(self) -> Path:
        return Path("/tmp") / f"cvb-cp-{os.getpid()}"  # short: ssh control socket paths have a length limit

    def begin_run(self, run: int) -> None:
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        (self.dir / "hosts.ini").write_text("[fleet]\n" + "\n".join(self.site.names) + "\n")
        (self.dir / "tmp").mkdir(exist_ok=True)
        ssh_args = (f"-F {self.site.ssh_config_fast} -o ControlMaster=auto -o ControlPersist=60s")
        (self.dir / "ansible.cfg").write_text(
            "[defaults]\n"
            "inventory = hosts.ini\n"
            f"forks = {self.site.count}\n"
            "host_key_checking = True\n"
            "gathering = explicit\n"
            "interpreter_python = /usr/bin/python3\n"
            "retry_files_enabled = False\n"
            f"local_tmp = {self.dir / 'tmp'}\n"
            "[ssh_connection]\n"
            "pipelining = True\n"
            f"ssh_args = {ssh_args}\n"
            f"control_path = {self.control_dir}/%%C\n")

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(ANSIBLE_CONFIG=str(self.dir / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_HOME=str(self.dir / "home"))
        return env

    def command(self, step: Step, run: int) -> Command:
        r = step.target.id
        tasks: list[dict[str, Any]] = []
        if step.kind == "deploy":
            assert step.target.tarball is not None
            remote_tar = f"{DEPLOY_TO}/incoming/{r}.tar.gz"
            tasks = [
                {"name": f"upload {r}", "ansible.builtin.copy": {"src": str(step.target.tarball),
                                                                 "dest": remote_tar}},
                {"name": "unpack, switch, prune, restart", "ansible.builtin.shell":
                    remote_unpack(r, remote_tar) + f" && rm -f {remote_tar} && " + remote_finish(r)},
            ]
        else:
            tasks = [{"name": "switch back, restart", "ansible.builtin.shell": remote_switch(r)}]
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        playbook = [{"hosts": "all", "gather_facts": False, "tasks": tasks}]
        path = self.dir / f"run{run}-{step.scenario}.yml"
        path.write_text(json.dumps(playbook, indent=1))
        return Command([self.exe(), path.name], env=self.env(), cwd=self.dir)

    def after(self, step: Step) -> None:
        """Close the ControlPersist masters (their CPU was counted while they ran: measure.adopted_cpu)."""
        for name in self.site.names:
            subprocess.run(["ssh", "-F", str(self.site.ssh_config_fast), "-o", f"ControlPath={self.control_dir}/%C",
                            "-O", "exit", name], capture_output=True, check=False, timeout=10)
        shutil.rmtree(self.control_dir, ignore_errors=True)


TOOL_ORDER = ("conveyor", "conveyor-openssh", "conveyor-gzip", "conveyor-stack", "floor", "floor-default", "rsync",
              "pyinfra", "ansible")
# Conveyor's measured configurations; ratios are made for each
CONVEYORS = ("conveyor", "conveyor-openssh", "conveyor-gzip", "conveyor-stack")
