"""Feature flags over SSH: the real `conveyor` CLI and a fleet of real OpenSSH servers (tests/sshfleet).

Four hosts in two regions, one wave each (uk, then za), canary first. Each host's flags file is written in
one round trip; the web check fails on the uk canary (h01) once `new-checkout` is on there, so that change is
switched back on h01 and goes no further. An OpenFeature app in file mode runs on h02 itself (started over
ssh, reading the host's own /srv) and sees each change without restarting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from sshfleet import Fleet, missing_requirements  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_requirements()),
                       reason=f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)"),
]

HOSTS = {"uk": ["h01", "h02"], "za": ["h03", "h04"]}
FLAGS = """\
flags:
  new-checkout:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
  banner:
    state: ENABLED
    variants: {plain: plain, festive: festive}
    defaultVariant: plain
  fast-path:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
    requires: {migration: 0042_add_col}
"""
CANARY_CHECK = ("! grep -A1 '\"new-checkout\"' ../../shared/flags.json | grep -q '\"defaultVariant\": \"on\"' "
                "|| [ \"$CONVEYOR_HOST\" != h01 ]")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("flagfleet"), names=[h for hosts in HOSTS.values() for h in hosts]) as up:
        yield up


class Site:
    def __init__(self, root: Path, fleet: Fleet, name: str) -> None:
        self.root, self.fleet, self.deploy_to = root, fleet, f"/srv/{name}"
        found = shutil.which("conveyor", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                                os.environ.get("PATH", "")]))
        assert found is not None
        self.conveyor = found
        ssh = {"user": "root", "identity_file": str(fleet.client_key), "known_hosts_file": str(fleet.known_hosts),
               "connect_timeout": "3s", "command_timeout": "20s"}
        settings = {
            "app": "shop", "artifact": {"path": "app"}, "deploy_to": self.deploy_to, "shared": ["log"], "ssh": ssh,
            "roles": {"web": {"canary": 1, "batch": 1, "checks": [{"command": CANARY_CHECK}]}},
            "environments": {"prod": {"transport": "ssh", "waves": [["uk"], ["za"]], "regions": {
                region: {"hosts": {"web": [{"name": h, "address": "127.0.0.1", "port": fleet.host(h).port}
                                           for h in hosts]}} for region, hosts in HOSTS.items()}}},
            "flags": {},
        }
        (root / "conveyor.yml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        (root / "flags").mkdir()
        (root / "flags" / "flags.yaml").write_text(FLAGS, encoding="utf-8")
        (root / "app").mkdir()
        (root / "app" / "VERSION").write_text("1\n", encoding="utf-8")

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in {"CONVEYOR_CONFIG", "CONVEYOR_STATE_URL"}}
        env.update(CONVEYOR_USER="tester", NO_COLOR="1", COLUMNS="200")
        done = subprocess.run([self.conveyor, "-c", str(self.root / "conveyor.yml"), *args], capture_output=True,
                              text=True, env=env, cwd=self.root, timeout=120, stdin=subprocess.DEVNULL, check=False)
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", expect=expect).stdout)

    def flags_path(self, host: str) -> Path:
        """The host's flags file, as the host's /srv is seen from the controller."""
        return self.fleet.host(host).srv / self.deploy_to.removeprefix("/srv/") / "shared" / "flags.json"

    def flags_file(self, host: str) -> dict[str, Any] | None:
        path = self.flags_path(host)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@pytest.fixture
def site(fleet: Fleet, tmp_path: Path, request: pytest.FixtureRequest) -> Site:
    made = Site(tmp_path, fleet, request.node.name.replace("_", "-")[:60])
    assert made.json("deploy", "prod", "--yes")["status"] == "succeeded"
    return made


def test_a_flag_rolled_out_by_waves_with_a_failing_check_on_the_canary_is_reverted_there_and_goes_no_further(
        site: Site) -> None:
    first = site.json("flags", "set", "prod", "banner", "festive", "--reason", "winter", "--yes")
    assert first["status"] == "succeeded", first
    before = {h: site.flags_file(h) for hosts in HOSTS.values() for h in hosts}
    assert {doc["flags"]["banner"]["defaultVariant"] for doc in before.values() if doc} == {"festive"}
    assert None not in before.values()

    result = site.json("flags", "set", "prod", "new-checkout", "on", "--reason", "launch", "--yes", expect=1)
    assert result["status"] == "rolled_back", result
    hosts = {h["host"]: h for r in result["regions"].values() for h in r["hosts"]}
    assert (hosts["h01"]["status"], hosts["h01"]["step"]) == ("rolled_back", "check")
    assert [hosts[h]["status"] for h in ("h02", "h03", "h04")] == ["pending"] * 3
    assert result["regions"]["za"]["status"] == "skipped"
    assert {h: site.flags_file(h) for hosts in HOSTS.values() for h in hosts} == before
    history = site.json("history", "prod")["deployments"]
    assert [(d["kind"], d["status"]) for d in history[:2]] == [("flags", "rolled_back"), ("flags", "succeeded")]


def test_an_openfeature_app_on_a_host_sees_each_change_without_restarting(site: Site) -> None:
    from flagreader import APP, FlagReader

    site.json("flags", "set", "prod", "banner", "plain", "--region", "uk", "--reason", "first file", "--yes")
    remote = f"{site.deploy_to}/shared/flags.json"
    host = site.fleet.host("h02")
    command, needed = host_python()
    forget = visible_on_host(host, [str(Path(APP).parent), *needed])
    app = FlagReader([*host.ssh_argv(), f"{command} {APP} {remote}"])
    try:
        app.ask("new-checkout=False banner=plain", 30, "the first flags")
        site.json("flags", "set", "prod", "banner", "festive", "--reason", "winter", "--yes")
        app.ask("new-checkout=False banner=festive", 30, "banner festive")
        site.json("flags", "set", "prod", "new-checkout", "on", "--region", "uk", "--reason", "go", "--yes", expect=1)
        app.ask("new-checkout=False banner=festive", 30, "new-checkout still off (reverted on the canary)")
        site.json("rollback", "prod", "--flags", "--yes")
        app.ask("new-checkout=False banner=plain", 30, "the last change reverted")
        assert app.process.poll() is None  # the same process all along
    finally:
        app.stop()
        forget()


def visible_on_host(host: Any, paths: list[str]) -> Any:
    """Make the controller's `paths` that lie under /root readable at the same paths inside `host`, whose
    /root is its own directory: a checkout under /root (CI's clone, its venv) is otherwise invisible there.
    They are hard-linked (copied if they must be) into the host's /root, and removed by the function
    returned."""
    made: list[Path] = []
    for path in dict.fromkeys(paths):
        if not path.startswith("/root/"):
            continue
        copy = host.home / path.removeprefix("/root/")
        if copy.exists():
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        linked = subprocess.run(["cp", "-al", path, str(copy)], capture_output=True, timeout=120, check=False)
        if linked.returncode != 0:
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(path, copy, symlinks=True)
        made.append(copy)

    def remove() -> None:
        for copy in made:
            shutil.rmtree(copy, ignore_errors=True)

    return remove


def host_python() -> tuple[str, list[str]]:
    """A command line that runs this interpreter's packages on a host, and the directories it needs there: a
    host has its own /root (where pyenv interpreters live), so it runs a system interpreter of the same
    version with our site-packages first."""
    import shlex
    import sysconfig

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    interpreter = (sys.executable if not os.path.realpath(sys.executable).startswith("/root/")
                   else shutil.which(version, path="/usr/local/bin:/usr/bin:/bin"))
    if interpreter is None:
        pytest.skip(f"no {version} outside /root for the hosts to run the app with")
    paths = os.pathsep.join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    return f"PYTHONPATH={shlex.quote(paths)} exec {shlex.quote(interpreter)}", paths.split(os.pathsep)


def test_switching_on_a_flag_whose_migration_is_not_applied_is_refused_over_ssh(site: Site) -> None:
    done = site.run("flags", "set", "prod", "fast-path", "on", "--reason", "x", "--yes", expect=3)
    assert "fast-path requires migration 0042_add_col, which is not applied there" in done.stderr
    files = [site.flags_file(h) for hosts in HOSTS.values() for h in hosts]
    assert [f["flags"]["fast-path"]["defaultVariant"] for f in files if f] == ["off"] * 4  # as the deploy wrote it
