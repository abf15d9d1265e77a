"""The real `conveyor` CLI deploying over SSH to a fleet of real OpenSSH servers (tests/sshfleet).

One fleet (12 hosts and a bastion, each an sshd on its own 127.0.0.1 port in its own mount and UTS
namespaces) serves the whole module. Every test deploys to its own `deploy_to` (`/srv/<test name>`), with
its own config, state store and artifact store in its tmp_path, so the tests do not see each other. A test
that breaks a host (kills its sshd, pauses it, changes its host key, overrides a file in its namespace)
puts it back in a `finally`, so the fleet stays usable for the next test.

The controller reads each host's files through `fleet.host(name).srv` (the host's /srv as seen from
here): what `current` points at is checked on the host side, never only in Conveyor's own reports.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from sshfleet import Fleet, FleetHost, missing_requirements  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_requirements()),
        reason=f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)",
    ),
]

RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
HOSTS = [f"h{i:02d}" for i in range(1, 13)]
CONNECT_TIMEOUT = 3.0
COMMAND_TIMEOUT = 20.0
SHORT_COMMAND_TIMEOUT = 4.0  # the break-a-host tests: small, so a hung host costs seconds, not minutes
POLL = 0.02
# The tests that matter most to both SSH clients run with each (ssh.client; asyncssh is the default).
CLIENTS = ("asyncssh", "openssh")

# Every restart leaves a line on its host: which kind of activation, which release, which host.
RESTART = ('printf "%s %s %s\\n" "$CONVEYOR_KIND" "$CONVEYOR_RELEASE" "$CONVEYOR_HOST" '
           '>> "$CONVEYOR_DEPLOY_TO/restarts.log"')

# A restart that, on a deploy to a host holding a `block` file, says it got there (`at-restart`) and waits
# for `go`: the test breaks the host at exactly that point (after the switch, during the restart).
BLOCKING_RESTART = RESTART + """
if [ "$CONVEYOR_KIND" = deploy ] && [ -e "$CONVEYOR_DEPLOY_TO/block" ]; then
  : > "$CONVEYOR_DEPLOY_TO/at-restart"
  while [ ! -e "$CONVEYOR_DEPLOY_TO/go" ]; do sleep 0.05; done
fi
"""


def _find_conveyor() -> str:
    # The console script of the interpreter running the tests (the editable install), then PATH.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("conveyor", path=search) or shutil.which("conveyor")
    if found is None:
        pytest.fail("the `conveyor` console script is not installed (pip install -e .)")
    return found


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


def settle(host: FleetHost, timeout: float = 10) -> None:
    """Wait until only the host's sshd listener is left: the sessions of earlier connections are gone."""
    wait_for(lambda: host.processes() <= {host.pid}, timeout, f"{host.name}'s old sessions to end")


def nsenter_mount(host: FleetHost, source: Path, target: str) -> None:
    """Bind-mount a controller file over `target` inside the host's own mount namespace only."""
    subprocess.run(["nsenter", "-t", str(host.pid), "-m", "--", "mount", "--bind", str(source), target],
                   check=True, capture_output=True, text=True, timeout=10)


def nsenter_umount(host: FleetHost, target: str) -> None:
    subprocess.run(["nsenter", "-t", str(host.pid), "-m", "--", "umount", target],
                   check=False, capture_output=True, text=True, timeout=10)


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("sshfleet"), names=HOSTS, bastion=True) as started:
        yield started


@pytest.fixture(scope="module")
def conveyor_cli() -> str:
    return _find_conveyor()


@dataclass
class Run:
    """One finished `conveyor` run."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (f"conveyor {' '.join(self.args)} -> exit {self.code} in {self.seconds:.1f}s\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"stdout is not one JSON document ({exc}):\n{self}") from None


@dataclass
class Site:
    """A test's config directory, its deploy_to on the fleet's hosts, and the CLI to drive it."""

    root: Path
    fleet: Fleet
    conveyor: str
    deploy_to: str
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # release id -> VERSION it was built from
    user: str = "tester"

    @property
    def cfg(self) -> Path:
        return self.root / "conveyor.yml"

    @property
    def artifact(self) -> Path:
        return self.root / "app"

    def write_config(self) -> None:
        self.cfg.write_text(yaml.safe_dump(self.settings, sort_keys=False), encoding="utf-8")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in {"CONVEYOR_CONFIG", "CONVEYOR_STATE_URL"} and not k.startswith(("GITLAB_", "GITHUB_"))}
        env.update(CONVEYOR_USER=self.user, NO_COLOR="1", COLUMNS="200",
                   GIT_CEILING_DIRECTORIES=str(self.root.parent))
        return env

    def command(self, *args: str) -> list[str]:
        return [self.conveyor, "-c", str(self.cfg), *args]

    def run(self, *args: str, expect: int | None = 0, timeout: float = 90) -> Run:
        started = time.monotonic()
        done = subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env(), cwd=self.root,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        result = Run(list(args), done.returncode, done.stdout, done.stderr, time.monotonic() - started)
        assert "Traceback" not in done.stderr + done.stdout, str(result)
        if expect is not None:
            assert done.returncode == expect, str(result)
        return result

    def json(self, *args: str, expect: int = 0, timeout: float = 90) -> Any:
        return self.run(*args, "--json", expect=expect, timeout=timeout).json()

    # -- releases
    @staticmethod
    def artifact_files(version: str) -> dict[str, str]:
        return {
            "VERSION": f"{version}\n",
            "bin/start": "#!/bin/sh\nexec echo shop\n",
            "static/index.html": f"<h1>shop {version}</h1>\n",
        }

    def write_artifact(self, version: str, extra: dict[str, str] | None = None) -> None:
        shutil.rmtree(self.artifact, ignore_errors=True)
        for name, text in {**self.artifact_files(version), **(extra or {})}.items():
            path = self.artifact / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (self.artifact / "bin" / "start").chmod(0o755)

    def build(self, version: str, extra: dict[str, str] | None = None) -> str:
        self.write_artifact(version, extra)
        release = self.json("build")["id"]
        assert RELEASE_ID.match(release), release
        self.versions[release] = version
        return release

    def deploy(self, release: str, *args: str, expect: int = 0, env: str = "prod") -> Any:
        return self.json("deploy", env, "--release", release, "--yes", *args, expect=expect)

    def detail(self, deployment_id: int) -> dict[str, Any]:
        """`history --id N --json`, with the hosts keyed by name."""
        doc = self.json("history", "--id", str(deployment_id))
        doc["by_host"] = {h["host"]: h for h in doc["hosts"]}
        return doc

    # -- hosts, read on the controller through each host's /srv
    def host_dir(self, name: str) -> Path:
        return self.fleet.host(name).srv / self.deploy_to.removeprefix("/srv/")

    def current(self, name: str) -> str | None:
        """The release `current` points at on the host (None without `current`), checking the link's form."""
        link = self.host_dir(name) / "current"
        if not link.is_symlink():
            assert not link.exists(), f"{link} exists but is not a symlink"
            return None
        target = os.readlink(link)
        parts = target.split("/")
        assert len(parts) == 2, f"{link} -> {target}, expected releases/<release id>"
        assert parts[0] == "releases", f"{link} -> {target}, expected releases/<release id>"
        assert RELEASE_ID.match(parts[1]), f"{link} -> {target}, expected releases/<release id>"
        assert (link.parent / target).is_dir(), f"{link} -> {target}, which is not a directory"
        return parts[1]

    def currents(self, names: list[str]) -> dict[str, str | None]:
        return {name: self.current(name) for name in names}

    def assert_complete(self, name: str, release: str) -> None:
        """releases/<id> on the host holds exactly the files of the build, and `log` links to shared/log."""
        folder = self.host_dir(name) / "releases" / release
        expected = self.artifact_files(self.versions[release])
        found = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
        assert found == set(expected), f"{name}: {folder}: files {sorted(found)}, expected {sorted(expected)}"
        for rel, text in expected.items():
            assert (folder / rel).read_text(encoding="utf-8") == text, f"{name}: {rel} differs from the build"
        assert os.access(folder / "bin" / "start", os.X_OK), f"{name}: bin/start lost its executable bit"
        assert (folder / "log").is_symlink(), f"{name}: log is not a link to shared/log"
        assert os.readlink(folder / "log") == f"{self.deploy_to}/shared/log", f"{name}: log -> elsewhere"

    def restarts(self, name: str) -> list[str]:
        log = self.host_dir(name) / "restarts.log"
        return log.read_text().splitlines() if log.exists() else []

    def journal(self, name: str) -> list[dict[str, Any]]:
        path = self.host_dir(name) / ".conveyor" / "journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def host_entry(fleet: Fleet, name: str, address: str = "127.0.0.1") -> dict[str, Any]:
    return {"name": name, "address": address, "port": fleet.host(name).port}


def ssh_settings(fleet: Fleet, **overrides: Any) -> dict[str, Any]:
    return {"user": "root", "identity_file": str(fleet.client_key), "known_hosts_file": str(fleet.known_hosts),
            "connect_timeout": f"{CONNECT_TIMEOUT:g}s", "command_timeout": f"{COMMAND_TIMEOUT:g}s", **overrides}


def base_settings(fleet: Fleet, deploy_to: str, regions: dict[str, list[str]], **role: Any) -> dict[str, Any]:
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": deploy_to,
        "shared": ["log"],
        "ssh": ssh_settings(fleet),
        "roles": {"web": {"restart": RESTART, "canary": 1, "batch": "50%", **role}},
        "environments": {"prod": {"transport": "ssh", "regions": {
            region: {"hosts": {"web": [host_entry(fleet, h) for h in names]}} for region, names in regions.items()
        }}},
    }


@pytest.fixture
def make_site(fleet: Fleet, conveyor_cli: str, tmp_path: Path,
              request: pytest.FixtureRequest) -> Callable[..., Site]:
    """A Site for this test: deploy_to /srv/<test name>, config written from `settings`."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")

    def make(regions: dict[str, list[str]] | None = None, *, deploy_to: str | None = None, client: str | None = None,
             **role: Any) -> Site:
        target = deploy_to or f"/srv/{name}"
        site = Site(tmp_path, fleet, conveyor_cli, target)
        site.settings = base_settings(fleet, target, regions or {"za": HOSTS[:6], "uk": HOSTS[6:]}, **role)
        if client is not None:
            site.settings["ssh"]["client"] = client
        site.write_config()
        return site

    return make


# ------------------------------------------------------------------------------- 1. deploy, verify, back


@pytest.mark.parametrize("client", CLIENTS)
def test_deploy_verify_rollback_and_redeploy_on_twelve_hosts_in_two_regions(make_site: Callable[..., Site],
                                                                           client: str) -> None:
    za, uk = HOSTS[:6], HOSTS[6:]
    site = make_site({"za": za, "uk": uk}, client=client)
    r1 = site.build("v1")
    r2 = site.build("v2")

    first = site.deploy(r1)
    assert first["status"] == "succeeded", first
    assert first["failed_hosts"] == []
    for region in ("za", "uk"):
        hosts = first["regions"][region]["hosts"]
        assert [h["host"] for h in hosts] == (za if region == "za" else uk)
        assert all(h["status"] == "succeeded" and h["transferred"] for h in hosts), hosts
    assert site.currents(HOSTS) == dict.fromkeys(HOSTS, r1)
    for name in HOSTS:
        site.assert_complete(name, r1)
        assert site.restarts(name) == [f"deploy {r1} {name}"]

    second = site.deploy(r2)
    assert second["status"] == "succeeded", second
    assert site.currents(HOSTS) == dict.fromkeys(HOSTS, r2)
    for name in HOSTS:
        site.assert_complete(name, r2)
        site.assert_complete(name, r1)  # the rollback target stays on disk
        entry = site.journal(name)[-1]
        assert (entry["event"], entry["release"], entry["previous"], entry["user"]) == ("ready", r2, r1, "tester")

    # --verify reads the hosts, not the record: point one host back by hand and it shows.
    verified = site.json("status", "prod", "--verify")["environments"]["prod"]
    assert verified["verified"] is True
    for region, names in (("za", za), ("uk", uk)):
        doc = verified["regions"][region]
        assert doc["consistent"] is True, doc
        assert doc["release"] == r2
        assert [(h["name"], h["release"]) for h in doc["hosts"]] == [(n, r2) for n in names]
        assert not any("error" in h for h in doc["hosts"]), doc
    link = site.host_dir("h09") / "current"
    os.symlink(f"releases/{r1}", link.with_name("current.test"))
    os.replace(link.with_name("current.test"), link)
    try:
        drifted = site.json("status", "prod", "--verify")["environments"]["prod"]["regions"]
        assert drifted["za"]["consistent"] is True
        assert drifted["uk"]["consistent"] is False
        assert {h["name"]: h["release"] for h in drifted["uk"]["hosts"]}["h09"] == r1
    finally:
        os.symlink(f"releases/{r2}", link.with_name("current.test"))
        os.replace(link.with_name("current.test"), link)

    back = site.json("rollback", "prod", "--yes")
    assert back["status"] == "succeeded", back
    assert back["release"] == r1
    assert site.currents(HOSTS) == dict.fromkeys(HOSTS, r1)
    detail = site.detail(back["id"])
    assert detail["kind"] == "rollback"
    assert detail["user"] == "tester"
    assert {h["host"]: (h["status"], h["release"], h["transferred"]) for h in detail["hosts"]} == \
        dict.fromkeys(HOSTS, ("succeeded", r1, False))
    for name in HOSTS:
        assert site.restarts(name)[-1] == f"rollback {r1} {name}"
    verified = site.json("status", "prod", "--verify")["environments"]["prod"]["regions"]
    assert {r: (d["consistent"], d["release"]) for r, d in verified.items()} == {"za": (True, r1), "uk": (True, r1)}

    # r2 is still on every host: deploying it again sends nothing ...
    again = site.deploy(r2)
    assert again["status"] == "succeeded", again
    detail = site.detail(again["id"])
    assert {h["host"]: (h["status"], h["transferred"]) for h in detail["hosts"]} == \
        dict.fromkeys(HOSTS, ("succeeded", False))
    assert site.currents(HOSTS) == dict.fromkeys(HOSTS, r2)
    # ... and deploying it once more, where it already runs, does nothing at all (no restart either).
    restarts = {name: len(site.restarts(name)) for name in HOSTS}
    same = site.deploy(r2)
    assert same["status"] == "succeeded", same
    detail = site.detail(same["id"])
    assert {h["host"]: (h["status"], h["transferred"]) for h in detail["hosts"]} == \
        dict.fromkeys(HOSTS, ("unchanged", False))
    assert {name: len(site.restarts(name)) for name in HOSTS} == restarts


# ----------------------------------------------------------------- 2. a host dies, a host hangs


@contextlib.contextmanager
def broken_mid_restart(site: Site, killed: FleetHost, hung: FleetHost) -> Iterator[Callable[[], Run]]:
    """Yields a function that deploys a new build ("v2") and, once both hosts are inside their restart
    (after `current` was switched), kills `killed`'s sshd with its sessions and pauses `hung`. Afterwards
    the hosts are resumed/restarted and their leftover sessions have ended."""
    for host in (killed, hung):
        (site.host_dir(host.name) / "block").touch()

    def deploy() -> Run:
        site.write_artifact("v2")
        started = time.monotonic()
        args = ["deploy", "prod", "--yes", "--json"]
        with subprocess.Popen(site.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=site.env(), cwd=site.root, stdin=subprocess.DEVNULL) as proc:
            try:
                wait_for(lambda: proc.poll() is not None or all(
                    (site.host_dir(h.name) / "at-restart").exists() for h in (killed, hung)),
                    30, "both hosts to reach their restart")
                assert proc.poll() is None, f"the deploy ended before both hosts reached their restart: " \
                                            f"{proc.communicate()}"
                # The host dies at once, as on a power cut: stopped first, then killed, so no process of it
                # gets to report a child's death ("exit 137: Killed") before its connection drops.
                killed.pause()
                killed.stop_sshd()
                hung.pause()
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        run = Run(args, proc.returncode, out, err, time.monotonic() - started)
        assert "Traceback" not in out + err, str(run)
        return run

    try:
        yield deploy
    finally:
        for host in (killed, hung):
            (site.host_dir(host.name) / "block").unlink(missing_ok=True)
            (site.host_dir(host.name) / "go").touch()  # lets a restart left waiting on a host finish
        hung.resume()
        killed.restart_sshd()
        settle(hung)
        settle(killed)


@pytest.mark.parametrize("client", CLIENTS)
def test_killed_and_hung_hosts_fail_in_time_and_max_failures_lets_the_rest_finish(
        make_site: Callable[..., Site], fleet: Fleet, client: str) -> None:
    names = HOSTS[:6]
    site = make_site({"za": names}, restart=BLOCKING_RESTART, batch="100%", max_failures=2, client=client)
    site.settings["ssh"]["command_timeout"] = f"{SHORT_COMMAND_TIMEOUT:g}s"
    site.write_config()
    killed, hung = fleet.host("h05"), fleet.host("h06")
    r1 = site.deploy(site.build("v1"))["release"]

    with broken_mid_restart(site, killed, hung) as deploy:
        run = deploy()
    assert run.code == 0, str(run)
    result = run.json()
    r2 = result["release"]
    assert result["status"] == "succeeded", result
    assert sorted(result["failed_hosts"]) == ["h05", "h06"]
    # Each failure is noticed within its timeout: the killed one at once, the hung one after the restart's
    # command_timeout, plus one more for the attempt to switch it back (it does not answer that either).
    assert run.seconds < 2 * SHORT_COMMAND_TIMEOUT + 8, str(run)
    print(f"deploy with a killed and a hung host, max_failures 2: {run.seconds:.1f}s")

    detail = site.detail(result["id"])
    assert detail["status"] == "succeeded"
    assert sorted(detail["failed_hosts"]) == ["h05", "h06"]
    dead, stuck = detail["by_host"]["h05"], detail["by_host"]["h06"]
    assert dead["status"] == "failed"
    assert dead["step"] == "restart", dead
    assert "connection lost" in dead["error"], dead
    assert stuck["status"] == "failed"
    assert stuck["step"] == "restart", stuck
    assert "timed out" in stuck["error"], stuck
    # What the restart printed is shown once it ends; one that never ends is pointed at where it writes.
    assert f"{site.deploy_to}/.conveyor/restart.log on the host" in stuck["error"], stuck
    # the dead one is noticed when its connection drops, the hung one when its command_timeout runs out
    assert dead["duration"] < SHORT_COMMAND_TIMEOUT - 1, dead
    assert SHORT_COMMAND_TIMEOUT - 0.5 < stuck["duration"] < SHORT_COMMAND_TIMEOUT + 3, stuck
    # Both were switched before they broke; switching them back failed, and the record says so.
    for host in (dead, stuck):
        assert host["note"] is not None
        assert host["note"].startswith(f"switching back to {r1} failed"), host
    for name in HOSTS[:4]:
        assert detail["by_host"][name]["status"] == "succeeded"
        assert site.current(name) == r2
    assert site.current("h05") == r2  # switched before the host died: the truth is on the host
    assert site.current("h06") == r2

    # Once the hosts are back, deploying the same release again brings them in line; nothing is re-sent.
    again = site.deploy(r2)
    assert again["status"] == "succeeded", again
    assert site.currents(names) == dict.fromkeys(names, r2)
    assert not any(h["transferred"] for h in site.detail(again["id"])["hosts"])
    verified = site.json("status", "prod", "--verify")["environments"]["prod"]["regions"]["za"]
    assert (verified["consistent"], verified["release"]) == (True, r2)


def test_without_max_failures_a_killed_and_a_hung_host_halt_the_region_and_it_is_switched_back(
        make_site: Callable[..., Site], fleet: Fleet) -> None:
    names = HOSTS[:6]
    site = make_site({"za": names}, restart=BLOCKING_RESTART, batch="100%")
    site.settings["ssh"]["command_timeout"] = f"{SHORT_COMMAND_TIMEOUT:g}s"
    site.write_config()
    killed, hung = fleet.host("h05"), fleet.host("h06")
    r1 = site.deploy(site.build("v1"))["release"]

    with broken_mid_restart(site, killed, hung) as deploy:
        run = deploy()
    assert run.code == 1, str(run)
    result = run.json()
    # restart, the batch's switch-back and the region's switch-back each wait one command_timeout at most
    assert run.seconds < 3 * SHORT_COMMAND_TIMEOUT + 8, str(run)
    print(f"deploy with a killed and a hung host, max_failures 0: {run.seconds:.1f}s")
    assert sorted(result["failed_hosts"]) == ["h05", "h06"]
    # The healthy hosts are switched back. The two broken ones had already been switched when they broke and
    # cannot be switched back while they are down, so the region is honestly "failed" (could not be put back
    # completely, DESIGN.md), not "rolled_back".
    assert result["status"] == "failed", result
    assert "could not switch back: h05, h06" in result["message"], result
    detail = site.detail(result["id"])
    assert detail["status"] == "failed"
    assert "connection lost" in detail["by_host"]["h05"]["error"]
    assert "timed out" in detail["by_host"]["h06"]["error"]
    for name in HOSTS[:4]:
        assert detail["by_host"][name]["status"] == "rolled_back", detail["by_host"][name]
        assert site.current(name) == r1
    r2 = result["release"]
    assert site.current("h05") == r2
    assert site.current("h06") == r2

    # Back up: one deploy of the previous release brings the whole region to one release again.
    back = site.deploy(r1)
    assert back["status"] == "succeeded", back
    assert site.currents(names) == dict.fromkeys(names, r1)
    verified = site.json("status", "prod", "--verify")["environments"]["prod"]["regions"]["za"]
    assert (verified["consistent"], verified["release"]) == (True, r1)


def test_unreachable_hosts_fail_at_connect_and_without_max_failures_the_region_is_rolled_back(
        make_site: Callable[..., Site], fleet: Fleet) -> None:
    names = HOSTS[:6]
    site = make_site({"za": names}, batch="100%")
    refused, silent = fleet.host("h05"), fleet.host("h06")
    r1 = site.deploy(site.build("v1"))["release"]
    r2 = site.build("v2")
    refused.stop_sshd()
    silent.pause()
    try:
        run = site.run("deploy", "prod", "--release", r2, "--yes", "--json", expect=1)
    finally:
        silent.resume()
        refused.start_sshd()
        settle(silent)
    assert run.seconds < CONNECT_TIMEOUT + 8, str(run)
    result = run.json()
    assert result["status"] == "rolled_back", result
    assert sorted(result["failed_hosts"]) == ["h05", "h06"]
    detail = site.detail(result["id"])
    assert detail["status"] == "rolled_back"
    no, hangs = detail["by_host"]["h05"], detail["by_host"]["h06"]
    assert no["step"] == "connect"
    assert "connection refused" in no["error"], no
    assert hangs["step"] == "connect"
    assert re.search(r"timed out|no connection within", hangs["error"]), hangs
    for name in HOSTS[:4]:
        assert detail["by_host"][name]["status"] == "rolled_back", detail["by_host"][name]
    assert site.currents(names) == dict.fromkeys(names, r1)


# ---------------------------------------------------------------------------------------- 3. host keys


def test_host_keys_strict_refuses_unknown_and_changed_and_accept_new_records(
        make_site: Callable[..., Site], fleet: Fleet, tmp_path: Path) -> None:
    unknown, changed, fresh = "h07", "h08", "h09"
    site = make_site({"za": [unknown], "uk": [changed], "ca": [fresh]})
    regions = site.settings["environments"]["prod"]["regions"]
    lacking = tmp_path / "known_hosts.lacking"
    lacking.write_text("".join(f"{h.known_hosts_line}\n" for h in fleet.all_hosts if h.name != unknown))
    old_key = tmp_path / "known_hosts.old"
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    regions["za"]["ssh"] = {"known_hosts": "strict", "known_hosts_file": str(lacking)}
    regions["uk"]["ssh"] = {"known_hosts": "strict", "known_hosts_file": str(old_key)}
    regions["ca"]["ssh"] = {"known_hosts": "accept-new", "known_hosts_file": str(empty)}
    site.write_config()
    release = site.build("v1")

    # strict, and the file has no line for the host: refused, and the message says why
    result = site.deploy(release, "--region", "za", expect=1)
    host = site.detail(result["id"])["by_host"][unknown]
    assert (host["status"], host["step"]) == ("failed", "connect"), host
    assert "host key" in host["error"], host
    assert "is not in" in host["error"], host
    assert str(lacking) in host["error"], host
    assert site.current(unknown) is None
    assert not site.host_dir(unknown).exists()  # nothing ran there

    # a changed key is refused, under strict and under accept-new alike, and the message says it CHANGED
    target = fleet.host(changed)
    old_key.write_text(target.known_hosts_line + "\n")
    try:
        target.new_host_key()
        for mode in ("strict", "accept-new"):
            regions["uk"]["ssh"]["known_hosts"] = mode
            site.write_config()
            result = site.deploy(release, "--region", "uk", expect=1)
            host = site.detail(result["id"])["by_host"][changed]
            assert (host["status"], host["step"]) == ("failed", "connect"), host
            assert "CHANGED" in host["error"], host
            assert site.current(changed) is None
        assert target.known_hosts_line not in old_key.read_text()  # a changed key is never recorded
    finally:
        fleet.write_known_hosts()  # the fleet's own file learns the new key, for the tests after this one

    # accept-new and an empty file: the deploy goes through and the key is recorded
    result = site.deploy(release, "--region", "ca")
    assert result["status"] == "succeeded", result
    assert site.current(fresh) == release
    assert empty.read_text().splitlines() == [fleet.host(fresh).known_hosts_line]
    # the recorded line is a good one: strict accepts it now
    regions["ca"]["ssh"]["known_hosts"] = "strict"
    site.write_config()
    assert site.deploy(release, "--region", "ca")["status"] == "succeeded"


# ------------------------------------------------------------------------------------------ 4. bastion


@pytest.mark.parametrize("client", CLIENTS)
def test_a_region_reachable_only_through_its_bastion_deploys(make_site: Callable[..., Site], fleet: Fleet,
                                                              tmp_path: Path, client: str) -> None:
    """The hosts are given names that resolve only inside the bastion's own mount namespace (an /etc/hosts
    bind-mounted there, and nowhere else): the controller cannot resolve them, so it cannot reach them
    directly. A deploy that succeeds therefore went through the bastion for every connection; a config
    without `jump` fails at connect; and with the bastion paused, the jump config fails too (time-bounded)."""
    bastion = fleet.bastion
    assert bastion is not None
    names = ["h10", "h11"]
    hidden = {name: f"{name}.behind-bastion.invalid" for name in names}
    hosts_file = tmp_path / "bastion-hosts"
    hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {a}\n" for a in hidden.values()))
    known = tmp_path / "known_hosts"
    known.write_text(bastion.known_hosts_line + "\n" + "".join(
        fleet.host(n).known_hosts_line.replace("[127.0.0.1]", f"[{hidden[n]}]") + "\n" for n in names))

    site = make_site({"za": names}, client=client)
    entries = [host_entry(fleet, n, address=hidden[n]) for n in names]
    site.settings["ssh"]["known_hosts_file"] = str(known)
    site.settings["environments"] = {
        "prod": {"transport": "ssh", "regions": {"za": {
            "hosts": {"web": entries}, "ssh": {"jump": f"root@127.0.0.1:{bastion.port}"}}}},
        "direct": {"transport": "ssh", "regions": {"za": {"hosts": {"web": entries}}}},
    }
    site.write_config()
    r1 = site.build("v1")

    nsenter_mount(bastion, hosts_file, "/etc/hosts")
    try:
        # the names resolve on the bastion, and only there
        seen = bastion.run(f"getent hosts {hidden['h10']}", timeout=10)
        assert seen.stdout.split() == ["127.0.0.1", hidden["h10"]], seen
        assert hidden["h10"] not in Path("/etc/hosts").read_text()

        direct = site.deploy(r1, env="direct", expect=1)
        assert direct["status"] == "rolled_back", direct
        host = site.detail(direct["id"])["by_host"]["h10"]
        assert (host["status"], host["step"]) == ("failed", "connect"), host
        assert re.search(r"cannot resolve|timed out|no connection", host["error"]), host
        assert site.currents(names) == {"h10": None, "h11": None}

        through = site.deploy(r1)
        assert through["status"] == "succeeded", through
        assert site.currents(names) == dict.fromkeys(names, r1)
        for name in names:
            site.assert_complete(name, r1)

        # with the bastion hung, the same config fails at connect within the connect timeout
        r2 = site.build("v2")
        bastion.pause()
        try:
            started = time.monotonic()
            stalled = site.deploy(r2, expect=1)
            took = time.monotonic() - started
        finally:
            bastion.resume()
        assert took < CONNECT_TIMEOUT + 8, took
        rows = site.detail(stalled["id"])["by_host"]
        assert rows["h11"]["status"] == "pending"  # the canary failed: the region stopped there
        canary = rows["h10"]
        assert (canary["status"], canary["step"]) == ("failed", "connect"), canary
        assert "bastion" in canary["error"], canary
        assert "timed out" in canary["error"], canary
        assert site.currents(names) == dict.fromkeys(names, r1)

        settle(bastion)
        assert site.deploy(r2)["status"] == "succeeded"
        assert site.currents(names) == dict.fromkeys(names, r2)
    finally:
        nsenter_umount(bastion, "/etc/hosts")


# --------------------------------------------------------------------------------- 5. hostile values


HOSTILE_RESTART = """printf '%s\\n' 'single $(touch PWNED) `touch PWNED` "dq" \\ end' \\
  "double \\$(touch PWNED) \\`touch PWNED\\` 'sq' \\"dq\\"" 'it'"'"'s' 'two
lines' > "$CONVEYOR_DEPLOY_TO/args.txt"
printf '%s\\n' "$CONVEYOR_DEPLOY_TO" "$CONVEYOR_RELEASE_PATH" "$PWD" "$CONVEYOR_HOST" >> "$CONVEYOR_DEPLOY_TO/args.txt"
"""
HOSTILE_ARGS = [
    "single $(touch PWNED) `touch PWNED` \"dq\" \\ end",
    "double $(touch PWNED) `touch PWNED` 'sq' \"dq\"",
    "it's",
    "two",
    "lines",
]


def test_hostile_paths_commands_and_names_run_as_written(make_site: Callable[..., Site], fleet: Fleet,
                                                         tmp_path: Path) -> None:
    names = ["h11", "h12"]
    # (`${NAME}` is left out: the config loader substitutes environment variables there, by design.)
    deploy_to = "/srv/hostile it's \"dq\" $(touch PWNED) `touch PWNED`; touch PWNED & | > * $HOME \\ -rf"
    site = make_site({"za": names}, deploy_to=deploy_to, restart=HOSTILE_RESTART, checks=[
        {"command": "test -f \"static/it's \\$(touch PWNED) \\`x\\`.txt\" && "
                    "grep -qx 'two' \"$CONVEYOR_DEPLOY_TO/args.txt\"", "retries": 0}])
    site.settings["shared"] = ["log", "data $(touch PWNED)/`touch PWNED`"]
    site.write_config()
    site.user = "o'brien $(touch PWNED) `touch PWNED`"
    weird = "static/it's $(touch PWNED) `x`.txt"
    release = site.build("v1", extra={weird: "content $(touch PWNED)\n"})

    result = site.deploy(release, "--reason", "fix 'quotes' $(touch PWNED) `touch PWNED`")
    assert result["status"] == "succeeded", result
    for name in names:
        folder = site.host_dir(name)
        assert folder.is_dir(), f"{name}: {folder} was not made as written"
        assert site.current(name) == release
        rel = folder / "releases" / release
        assert (rel / weird).read_text() == "content $(touch PWNED)\n"
        assert (rel / "data $(touch PWNED)" / "`touch PWNED`").is_symlink()
        assert os.readlink(rel / "data $(touch PWNED)" / "`touch PWNED`") == \
            f"{deploy_to}/shared/data $(touch PWNED)/`touch PWNED`"
        expected = [*HOSTILE_ARGS, deploy_to, f"{deploy_to}/releases/{release}",
                    f"{deploy_to}/releases/{release}", name]
        assert (folder / "args.txt").read_text() == "\n".join(expected) + "\n"
        journal = site.journal(name)
        assert journal[-1]["user"] == site.user
        assert journal[-1]["event"] == "ready"
    for root in [*(fleet.host(n).srv for n in names), *(fleet.host(n).home for n in names), tmp_path]:
        assert list(root.rglob("PWNED")) == [], f"something ran under {root}"
    assert site.json("history", "-n", "1")["deployments"][0]["user"] == site.user


# -------------------------------------------------------------------------- 6. HTTP checks over SSH


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[int]:
    """`python3 -m http.server` on 127.0.0.1 (the fleet's loopback too), serving `health` = "ok"."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "health").write_text("status: ok\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "http.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(www),
                             str(port)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def listening() -> bool:
        assert proc.poll() is None, (tmp_path / "http.log").read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 15, "the HTTP server to listen")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_http_checks_go_through_the_hosts_ssh_connection(make_site: Callable[..., Site], fleet: Fleet,
                                                         http_server: int, tmp_path: Path, client: str) -> None:
    """The check's URL names a host that resolves only inside the fleet hosts' own mount namespaces (an
    /etc/hosts bind-mounted there): a passing check was made from the host's side, through its SSH
    connection's port forwarding, not from the controller."""
    names = ["h11", "h12"]
    site = make_site({"za": names}, client=client)
    hosts_file = tmp_path / "host-hosts"
    hosts_file.write_text("127.0.0.1 localhost\n127.0.0.1 app.host-only.invalid\n")
    url = f"http://app.host-only.invalid:{http_server}"
    role = site.settings["roles"]["web"]
    role["checks"] = [{"http": f"{url}/health", "expect": 200, "contains": "ok", "timeout": "2s", "retries": 0}]
    site.write_config()
    r1 = site.build("v1")
    r2 = site.build("v2")
    mounted = []
    try:
        for name in names:
            nsenter_mount(fleet.host(name), hosts_file, "/etc/hosts")
            mounted.append(name)
        ok = site.deploy(r1)
        assert ok["status"] == "succeeded", ok
        assert site.currents(names) == dict.fromkeys(names, r1)
        log = (tmp_path / "http.log").read_text()
        assert log.count("GET /health HTTP/1.1\" 200") == len(names), log

        # a check that gets a 404: the deploy fails at step check, and the region is switched back
        role["checks"] = [{"http": f"{url}/missing", "expect": 200, "timeout": "2s", "retries": 1,
                           "interval": "100ms"}]
        site.write_config()
        failed = site.deploy(r2, expect=1)
        assert failed["status"] == "rolled_back", failed
        detail = site.detail(failed["id"])
        canary = detail["by_host"]["h11"]
        assert (canary["status"], canary["step"]) == ("rolled_back", "check"), canary
        assert "answered 404, expected 200" in canary["error"], canary
        assert "2 attempt(s)" in canary["error"], canary
        # h12 never moved: the canary stopped the region
        assert {h["host"]: h["status"] for h in failed["regions"]["za"]["hosts"]} == \
            {"h11": "rolled_back", "h12": "pending"}
        assert detail["by_host"]["h12"]["status"] == "pending"
        assert site.currents(names) == dict.fromkeys(names, r1)
        assert (tmp_path / "http.log").read_text().count("GET /missing HTTP/1.1\" 404") == 2
    finally:
        for name in mounted:
            nsenter_umount(fleet.host(name), "/etc/hosts")


# ---------------------------------------------------------------------- per-region ssh overrides


def test_a_regions_own_command_timeout_applies_to_its_hosts(make_site: Callable[..., Site]) -> None:
    site = make_site({"za": ["h01"], "uk": ["h02"]},
                     restart=RESTART + '\nif [ "$CONVEYOR_REGION" = uk ]; then sleep 3; fi\n')
    site.settings["environments"]["prod"]["regions"]["uk"]["ssh"] = {"command_timeout": "1s"}
    site.write_config()
    release = site.build("v1")
    result = site.deploy(release, expect=1)
    assert result["regions"]["za"]["status"] == "succeeded", result
    uk = site.detail(result["id"])["by_host"]["h02"]
    # It failed at its restart after 1 s (its region's limit, not the 10 m default), then was switched back.
    assert (uk["status"], uk["step"]) == ("rolled_back", "restart"), uk
    assert "timed out" in uk["error"], uk


def test_one_host_without_zstd_gets_a_gzip_copy_while_the_others_get_the_stored_zstd(
        make_site: Callable[..., Site], fleet: Fleet, tmp_path: Path) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("the zstd command is not installed")
    site = make_site({"za": ["h03", "h04", "h05"]})  # artifact.compression: the default, auto
    blank = tmp_path / "no-zstd"
    blank.write_text("")  # not executable: `command -v zstd` finds nothing on h04
    nsenter_mount(fleet.host("h04"), blank, shutil.which("zstd") or "/usr/bin/zstd")
    try:
        release = site.build("v1")
        result = site.deploy(release)
        rows = site.detail(result["id"])["by_host"]
        assert rows["h04"]["transfer"] == "full, gzip (no zstd on the host)", rows["h04"]
        assert rows["h03"]["transfer"] == rows["h05"]["transfer"] == "full", rows
        for name in ("h03", "h04", "h05"):
            site.assert_complete(name, release)
        plan = site.json("plan", "prod", "--release", release)
        assert plan["compression"]["without_zstd"] == ["h04"], plan["compression"]
    finally:
        nsenter_umount(fleet.host("h04"), shutil.which("zstd") or "/usr/bin/zstd")


# ------------------------------------------------------------------- transfer: pull, from S3 (moto)


def test_ssh_hosts_pull_the_release_from_s3_themselves(make_site: Callable[..., Site], moto_endpoint: str) -> None:
    import uuid

    import boto3

    bucket = f"conveyor-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-2")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    names = HOSTS[:4]
    site = make_site({"za": names})
    site.settings["artifact"] = {"path": "app", "store": f"s3://{bucket}/shop", "endpoint_url": moto_endpoint}
    site.settings["environments"]["prod"]["transfer"] = "pull"
    site.write_config()
    r1 = site.build("v1")
    result = site.deploy(r1)
    assert result["status"] == "succeeded", result
    assert [h["transfer"] for h in result["regions"]["za"]["hosts"]] == ["pulled by the host"] * 4
    for name in names:
        assert site.current(name) == r1
        site.assert_complete(name, r1)
        assert not list((site.host_dir(name) / "incoming").iterdir())  # the download is gone once placed

    # What the hosts download is damaged in the bucket (the controller's cached copy is fine): refused.
    r2 = site.build("v2")
    key = next(k["Key"] for k in s3.list_objects_v2(Bucket=bucket)["Contents"]
               if k["Key"].startswith(f"shop/releases/{r2}.tar"))
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    site.settings["artifact"]["delta"] = False  # every host must download the whole release
    site.write_config()
    refused = site.deploy(r2, expect=1)
    assert refused["status"] == "rolled_back", refused
    canary = site.detail(refused["id"])["by_host"][names[0]]
    assert canary["step"] == "verify", canary
    assert "checksum mismatch" in canary["error"], canary
    assert site.currents(names) == dict.fromkeys(names, r1)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_command_that_times_out_is_stopped_on_the_host(make_site: Callable[..., Site], client: str) -> None:
    # The restart of h03 hangs; after its 1 s command timeout nothing of it may keep running on the host.
    site = make_site({"za": ["h03"]}, client=client,
                     restart=RESTART + '\necho $$ >> "$CONVEYOR_DEPLOY_TO/hung.pids"; exec sleep 300\n')
    site.settings["ssh"]["command_timeout"] = "1s"
    site.write_config()
    release = site.build("v1")
    result = site.deploy(release, expect=1)
    h03 = site.detail(result["id"])["by_host"]["h03"]
    assert h03["step"] == "restart", h03
    assert "asked the host to stop it" in h03["output_tail"], h03
    pids = [int(p) for p in (site.host_dir("h03") / "hung.pids").read_text().split()]
    assert pids  # the deploy's restart, and the switch back's
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 10, "the hung restarts to be stopped")


# ------------------------------------------------------------------ the ledger is not optional (issue 15)


@contextlib.contextmanager
def small_disk(where: Path, size_mb: int = 16) -> Iterator[Path]:
    """A small ext4 filesystem of its own, loop-mounted at `where/disk`: a state store that can fill up."""
    image, mountpoint = where / "disk.img", where / "disk"
    mountpoint.mkdir()
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True, capture_output=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop,noatime", str(image), str(mountpoint)], check=True, capture_output=True)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)
        image.unlink(missing_ok=True)


def fill(disk: Path) -> Path:
    """Write one file until the disk has no byte left; the file (delete it and the disk has room again)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


def deploy_meanwhile(site: Site, release: str, host: str, meanwhile: Callable[[], None]) -> Run:
    """Deploy `release`; once `host` (the first canary) is inside its restart, run `meanwhile`, then let the
    restart finish, and return the run."""
    (site.host_dir(host) / "block").touch()
    args = ["deploy", "prod", "--release", release, "--yes", "--json"]
    started = time.monotonic()
    try:
        with subprocess.Popen(site.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=site.env(), cwd=site.root, stdin=subprocess.DEVNULL) as proc:
            try:
                wait_for(lambda: proc.poll() is not None or (site.host_dir(host) / "at-restart").exists(), 30,
                         f"{host} to reach its restart")
                assert proc.poll() is None, f"the deploy ended before {host} restarted: {proc.communicate()}"
                meanwhile()
                (site.host_dir(host) / "go").touch()
                out, err = proc.communicate(timeout=90)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        for name in ("block", "at-restart", "go"):
            (site.host_dir(host) / name).unlink(missing_ok=True)
    run = Run(args, proc.returncode, out, err, time.monotonic() - started)
    assert "Traceback" not in out + err, str(run)
    return run


def two_waves(make_site: Callable[..., Site], state: str) -> tuple[Site, list[str], list[str]]:
    """za (h01-h03) then uk (h04-h06), each a canary and a batch, with the state store at `state`."""
    za, uk = HOSTS[:3], HOSTS[3:6]
    site = make_site({"za": za, "uk": uk}, restart=BLOCKING_RESTART)
    site.settings["environments"]["prod"]["waves"] = [["za"], ["uk"]]
    site.settings["state"] = state
    site.write_config()
    return site, za, uk


def assert_stopped_by_its_ledger(site: Site, run: Run, za: list[str], uk: list[str], r1: str, r2: str,
                                 reason: str) -> int:
    """The deployment stopped with the batch in flight (the canary h01): it said why, plainly, and exited 1.
    Its id."""
    # On the hosts: the canary moved, no other host changed (not even a restart).
    assert site.currents([*za, *uk]) == {"h01": r2, **dict.fromkeys([*za[1:], *uk], r1)}
    for name in [*za[1:], *uk]:
        assert site.restarts(name) == [f"deploy {r1} {name}"], name
    assert run.code == 1, str(run)
    doc = run.json()
    message = doc["error"]
    deployment = doc["result"]["id"]
    assert message.startswith(f"deployment #{deployment} stopped before the next host changed: the state store "
                              f"cannot record this deployment: "), message
    assert reason in message.lower(), message
    assert f"`conveyor deploy prod --resume {deployment}` finishes this deployment" in message, message
    assert f"conveyor: {message.splitlines()[0]}" in run.stderr, run.stderr
    assert not re.search(r"<[^>]* object at 0x", run.stdout + run.stderr), str(run)  # no object reprs
    assert {r: d["status"] for r, d in doc["result"]["regions"].items()} == {"za": "interrupted",
                                                                             "uk": "interrupted"}
    statuses = {h["host"]: h["status"] for d in doc["result"]["regions"].values() for h in d["hosts"]}
    assert statuses == {"h01": "succeeded", **dict.fromkeys([*za[1:], *uk], "pending")}, statuses
    return int(deployment)


def assert_repaired_by_what_status_offers(site: Site, deployment: int, za: list[str], uk: list[str], r1: str,
                                          r2: str) -> None:
    """`status --verify` names the difference and the exact command; running it brings the fleet together."""
    verify = site.run("status", "prod", "--verify", "--json")
    regions = verify.json()["environments"]["prod"]["regions"]
    repair = f"conveyor deploy prod --resume {deployment}"
    assert regions["za"]["consistent"] is False
    assert regions["za"]["drift"] == (f"hosts run {r2} (h01) and {r1} (h02, h03) but the region's pointer says "
                                      f"{r1} (deployment #{deployment} to {r2} is interrupted)"), regions["za"]
    assert regions["za"]["repair"] == repair
    text = site.run("status", "prod", "--verify")  # a person reads the same under the table
    assert f"prod/za: {regions['za']['drift']}; `{repair}` repairs it" in text.stdout, text.stdout
    assert (regions["uk"]["consistent"], regions["uk"]["release"], regions["uk"].get("repair")) == (True, r1, None)
    history = site.json("history", "--id", str(deployment))
    assert history["status"] == "interrupted", history

    resumed = site.json(*repair.split()[1:], "--yes")
    assert resumed["status"] == "succeeded", resumed
    assert site.currents([*za, *uk]) == dict.fromkeys([*za, *uk], r2)
    after = site.json("status", "prod", "--verify")["environments"]["prod"]["regions"]
    for region in ("za", "uk"):
        assert (after[region]["consistent"], after[region]["release"], after[region]["pointer"]) == (True, r2, r2)
        assert "repair" not in after[region], after[region]


def test_a_state_store_whose_disk_fills_stops_the_deployment_before_the_next_host_changes(
        make_site: Callable[..., Site], tmp_path: Path) -> None:
    with small_disk(tmp_path) as disk:
        site, za, uk = two_waves(make_site, f"sqlite:///{disk / 'state.db'}")
        r1 = site.deploy(site.build("v1"))["release"]
        r2 = site.build("v2")
        filled: list[Path] = []
        run = deploy_meanwhile(site, r2, "h01", lambda: filled.append(fill(disk)))
        deployment = assert_stopped_by_its_ledger(site, run, za, uk, r1, r2, "database or disk is full")
        filled[0].unlink()
        assert_repaired_by_what_status_offers(site, deployment, za, uk, r1, r2)


def test_a_state_store_that_goes_away_stops_the_deployment_before_the_next_host_changes(
        make_site: Callable[..., Site], postgres_server: Any) -> None:
    site, za, uk = two_waves(make_site, postgres_server.url)
    r1 = site.deploy(site.build("v1"))["release"]
    r2 = site.build("v2")
    run = deploy_meanwhile(site, r2, "h01", postgres_server.stop)
    deployment = assert_stopped_by_its_ledger(site, run, za, uk, r1, r2, "connection")
    postgres_server.start()
    assert_repaired_by_what_status_offers(site, deployment, za, uk, r1, r2)
