"""Consistency over SSH: the real `conveyor` CLI and a fleet of real OpenSSH servers (tests/sshfleet), each
host in its own mount namespace, so each answers the probes from its own /srv/stack/ files.

staging is one region (s1 web, s2 batch); production four (za: p1 p2, uk: p3, ca: p4, us: p5); a sixth host
(n6) plays an autoscaled instance that runs `conveyor converge` itself, inside its own namespace. The
probes: `perl` (the file /srv/stack/perl, or 5.36.0), `os` (the same for /srv/stack/os, or debian-12).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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

STAGING = {"uk": {"web": ["s1"], "batch": ["s2"]}}
PRODUCTION = {"za": {"web": ["p1", "p2"]}, "uk": {"web": ["p3"]}, "ca": {"web": ["p4"]}, "us": {"web": ["p5"]}}
NEW = "n6"
NAMES = ["s1", "s2", "p1", "p2", "p3", "p4", "p5", NEW]


def answer(component: str, default: str) -> str:
    return f"cat /srv/stack/{component} 2>/dev/null || echo {default}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("stackfleet"), names=NAMES) as up:
        yield up


class Site:
    """A config directory, its fleet and the CLI; each host's probe answers written in its own /srv."""

    def __init__(self, root: Path, fleet: Fleet, name: str, **consistency: Any) -> None:
        self.root, self.fleet, self.deploy_to = root, fleet, f"/srv/{name}"
        found = shutil.which("conveyor", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                                os.environ.get("PATH", "")]))
        assert found is not None
        self.conveyor = found
        ssh = {"user": "root", "identity_file": str(fleet.client_key), "known_hosts_file": str(fleet.known_hosts),
               "connect_timeout": "3s", "command_timeout": "20s"}

        def hosts(regions: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
            return {region: {"hosts": {role: [{"name": h, "address": "127.0.0.1", "port": fleet.host(h).port}
                                              for h in names] for role, names in roles.items()}}
                    for region, roles in regions.items()}

        self.settings = {
            "app": "shop", "artifact": {"path": "app"}, "deploy_to": self.deploy_to, "shared": ["log"], "ssh": ssh,
            "roles": {"web": {"canary": 1, "batch": 1}, "batch": {}},
            "environments": {
                "staging": {"transport": "ssh", "regions": hosts(STAGING)},
                "production": {"transport": "ssh", "promote_from": "staging", "waves": [["za"], ["uk", "ca", "us"]],
                               "regions": hosts(PRODUCTION)},
            },
            "consistency": {"components": {"perl": {"probe": answer("perl", "5.36.0")},
                                           "os": {"probe": answer("os", "debian-12")}},
                            "build": ["perl"], "match": ["staging", "production"], **consistency},
        }
        self.write()
        for name in NAMES:
            shutil.rmtree(fleet.host(name).srv / "stack", ignore_errors=True)

    def write(self) -> None:
        (self.root / "conveyor.yml").write_text(yaml.safe_dump(self.settings, sort_keys=False), encoding="utf-8")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"CONVEYOR_CONFIG", "CONVEYOR_STATE_URL"}}
        return env | {"CONVEYOR_USER": "tester", "NO_COLOR": "1", "COLUMNS": "200"}

    def run(self, *args: str, expect: int | None = 0, prefix: tuple[str, ...] = ()
            ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*prefix, self.conveyor, "-c", str(self.root / "conveyor.yml"), *args],
                              capture_output=True, text=True, env=self.env(), cwd=self.root, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        if expect is not None:
            assert done.returncode == expect, f"{args} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", expect=expect).stdout)

    def build(self, version: str) -> str:
        shutil.rmtree(self.root / "app", ignore_errors=True)
        (self.root / "app").mkdir()
        (self.root / "app" / "VERSION").write_text(version + "\n")
        return str(self.json("build")["id"])

    def answer(self, host: str, component: str, value: str) -> None:
        """What `host` answers for `component` from now on: a file in its own /srv."""
        folder = self.fleet.host(host).srv / "stack"
        folder.mkdir(exist_ok=True)
        (folder / component).write_text(value + "\n")

    def current(self, host: str) -> str | None:
        link = self.fleet.host(host).srv / self.deploy_to.removeprefix("/srv/") / "current"
        return os.readlink(link).removeprefix("releases/") if link.is_symlink() else None


@pytest.fixture
def site(fleet: Fleet, tmp_path: Path, request: pytest.FixtureRequest) -> Site:
    return Site(tmp_path, fleet, request.node.name.replace("_", "-")[:60])


def matrix(document: dict[str, Any], component: str) -> dict[tuple[str, str, str], dict[str, list[str]]]:
    return {(r["environment"], r["region"], r["role"]): r["values"] for r in document["matrix"]
            if r["component"] == component}


def test_the_matrix_and_a_refused_then_accepted_promotion_over_ssh(site: Site) -> None:
    site.answer("s2", "os", "debian-12")  # the same as the default: files and defaults agree
    r1 = site.build("1")
    site.json("deploy", "staging", "--release", r1, "--yes")
    site.json("deploy", "production", "--release", r1, "--yes")
    document = site.json("consistency")
    assert document["consistent"], document["drift"]
    assert matrix(document, "perl") == {
        ("staging", "uk", "batch"): {"5.36.0": ["s2"]}, ("staging", "uk", "web"): {"5.36.0": ["s1"]},
        ("production", "ca", "web"): {"5.36.0": ["p4"]}, ("production", "uk", "web"): {"5.36.0": ["p3"]},
        ("production", "us", "web"): {"5.36.0": ["p5"]}, ("production", "za", "web"): {"5.36.0": ["p1", "p2"]}}

    # us is upgraded by hand; status --verify reads it (in the probe it makes anyway), and the matrix shows it.
    site.answer("p5", "perl", "5.38.2")
    site.json("status", "production", "--verify")
    drifted = site.json("consistency", "production", expect=1)
    assert matrix(drifted, "perl")[("production", "us", "web")] == {"5.38.2": ["p5"]}
    assert [(d["kind"], d["hosts"]) for d in drifted["drift"]] == [("role", ["p5"]), ("build", ["p5"])]
    text = site.run("consistency", "production", expect=1).stdout
    assert "p5: 5.38.2" in text

    r2 = site.build("2")
    site.json("deploy", "staging", "--release", r2, "--yes")
    refused = site.run("deploy", "production", "--release", r2, "--yes", expect=3)
    assert f"production refuses {r2}: perl:" in refused.stderr
    assert "5.38.2 on p5" in refused.stderr
    assert {h: site.current(h) for h in ("p1", "p2", "p3", "p4", "p5")} == dict.fromkeys(
        ("p1", "p2", "p3", "p4", "p5"), r1)
    plan = site.json("plan", "production", "--release", r2, expect=3)
    gate = next(g for g in plan["gates"] if g["gate"] == "consistency")
    assert not gate["open"]
    assert "5.38.2 on p5" in gate["detail"]

    accepted = site.json("deploy", "production", "--release", r2, "--yes", "--accept-drift", "--reason",
                         "us tries perl 5.38 (CHG-7)")
    assert accepted["status"] == "succeeded", accepted
    assert {h: site.current(h) for h in ("p1", "p2", "p3", "p4", "p5")} == dict.fromkeys(
        ("p1", "p2", "p3", "p4", "p5"), r2)
    history = site.json("history", "production")["deployments"]
    assert [(d["status"], d["overrides"]) for d in history[:2]] == [("succeeded", ["accept_drift"]),
                                                                    ("blocked", [])]
    stack = site.json("history", "--id", str(accepted["id"]))["stack"]
    assert stack["runs_on"]["perl"] == {"5.36.0": ["p1", "p2", "p3", "p4"], "5.38.2": ["p5"]}
    assert stack["tested_on"]["components"]["perl"] == {"5.36.0": ["s1", "s2"]}


def test_a_host_that_drifted_since_it_last_answered_is_refused_in_the_deploys_own_probe(site: Site) -> None:
    r1 = site.build("1")
    site.json("deploy", "staging", "--release", r1, "--yes")
    site.json("deploy", "production", "--release", r1, "--yes")
    r2 = site.build("2")
    site.json("deploy", "staging", "--release", r2, "--yes")
    site.answer("p2", "perl", "5.30.0")  # rebuilt from an old image since production's last deployment
    result = site.json("deploy", "production", "--release", r2, "--yes", expect=1)  # the gate saw 5.36.0
    za = {h["host"]: h for h in result["regions"]["za"]["hosts"]}
    assert za["p2"]["step"] == "consistency"
    assert "5.30.0 on p2" in za["p2"]["error"]
    assert za["p2"]["components"]["perl"] == {"value": "5.30.0", "error": None}
    assert site.current("p2") == r1  # nothing was put on it: refused in the probe step
    assert not (site.fleet.host("p2").srv / site.deploy_to.removeprefix("/srv/") / "releases" / r2).exists()


def test_a_drifting_autoscaled_instance_is_refused_by_converge(site: Site) -> None:
    r1 = site.build("1")
    site.json("deploy", "staging", "--release", r1, "--yes")
    site.json("deploy", "production", "--release", r1, "--yes")
    host = site.fleet.host(NEW)
    # As on the instance itself: a mount namespace of its own in which /srv is the instance's (the host's
    # own namespace hides this machine's /root, where the Python that runs conveyor lives).
    inside = ("unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /srv && exec "$@"',
              str(host.srv))
    args = ("converge", "--env", "production", "--region", "za", "--role", "web", "--host", NEW, "--json")

    site.answer(NEW, "perl", "5.20.0")  # booted from a stale image
    stale = json.loads(site.run(*args, expect=1, prefix=inside).stdout)
    assert stale["status"] == "failed"
    assert "its stack differs from its region's" in stale["message"]
    assert "5.20.0 on n6" in stale["message"]
    assert site.current(NEW) is None

    site.answer(NEW, "perl", "5.36.0")  # the image is fixed
    fresh = json.loads(site.run(*args, prefix=inside).stdout)
    assert (fresh["status"], fresh["release"]) == ("converged", r1)
    assert site.current(NEW) == r1


def test_failing_hanging_and_huge_probes_are_per_host_errors(site: Site) -> None:
    site.settings["consistency"] = {"components": {
        "perl": {"probe": answer("perl", "5.36.0")},
        "missing": {"probe": "wkhtmltopdf-nowhere --version"},
        "hangs": {"probe": "sleep 30", "timeout": "1s"},
        "huge": {"probe": "yes perl"},
    }}
    site.write()
    r1 = site.build("1")
    started = time.monotonic()
    result = site.json("deploy", "staging", "--release", r1, "--yes")
    assert time.monotonic() - started < 60  # the hanging probe was stopped at its second
    assert result["status"] == "succeeded"  # staging is not in match here: probes are observed, not judged
    components = result["regions"]["uk"]["hosts"][0]["components"]
    assert components["perl"] == {"value": "5.36.0", "error": None}
    assert components["missing"]["value"] is None
    assert components["missing"]["error"].startswith("the probe failed with exit 127:")
    assert "not found" in components["missing"]["error"]
    assert components["hangs"] == {"value": None, "error": "the probe timed out after 1s"}
    assert components["huge"] == {"value": None,
                                  "error": "the probe printed more than 4096 bytes (4 KiB): print only the version"}
    document = site.json("consistency", "staging", expect=1)
    row = next(r for r in document["matrix"] if r["component"] == "hangs" and r["role"] == "web")
    assert row["unreadable"] == {"s1": "the probe timed out after 1s"}
    text = site.run("consistency", "staging", expect=1).stdout
    assert "s1: unreadable (the probe timed out after 1s)" in text
