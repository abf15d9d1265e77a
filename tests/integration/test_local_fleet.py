"""The real `conveyor` CLI driving a local fleet: what a user sees (exit codes, JSON) and what hosts hold.

Each test has its own directory, config and state store (the `make_fleet` fixture). Hosts are directories
under `<config dir>/.conveyor/hosts/<env>/<region>/<host>/srv/shop/`. A host's "service" is its restart
command, which writes `serving` (release, host, region, role, kind) in `deploy_to`.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.engine.results import DeploymentStatus

pytestmark = pytest.mark.integration

RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
HISTORY_FIELDS = {"id", "environment", "regions", "release", "previous", "kind", "status", "started_at",
                  "finished_at", "user", "failed_hosts"}

# The restart of every host: record what it now serves, as the documented variables say.
SERVE = ('printf "%s %s %s %s %s\\n" "$CONVEYOR_RELEASE" "$CONVEYOR_HOST" "$CONVEYOR_REGION" "$CONVEYOR_ROLE" '
         '"$CONVEYOR_KIND" > "$CONVEYOR_DEPLOY_TO/serving"')


def fails_on(host: str, version: str, code: int = 7) -> str:
    """A restart that fails (exit `code`) on `host`, only when the release it starts is `version`.

    Restarts run in the release directory, so `VERSION` is the started release's: the same host switched
    back to an older release restarts fine.
    """
    return (f'if [ "$CONVEYOR_HOST" = {host} ] && [ "$(cat VERSION)" = {version} ]; then '
            f'echo "{host} refuses version {version}"; exit {code}; fi; {SERVE}')


def environment(regions: list[str], *, web: int = 3, batch: int = 1, **extra: Any) -> dict[str, Any]:
    """An environment of local hosts: per region `<region>-web-N` and `<region>-batch-N`."""
    hosts = {r: {"web": [f"{r}-web-{i}" for i in range(1, web + 1)]} for r in regions}
    for r in regions:
        if batch:
            hosts[r]["batch"] = [f"{r}-batch-{i}" for i in range(1, batch + 1)]
    return {"transport": "local", **extra, "regions": {r: {"hosts": hosts[r]} for r in regions}}


def config(environments: dict[str, Any], *, web_restart: str = SERVE, web: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    """A conveyor.yml as data; the artifact is the `app/` directory beside it."""
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "shared": ["log"],
        **extra,
        "roles": {
            "web": {"restart": web_restart, "canary": 1, "batch": 1, **(web or {})},
            "batch": {"restart": SERVE},
        },
        "environments": environments,
    }


def history(fleet: Any, *args: str) -> list[dict[str, Any]]:
    """`conveyor history --json`: the deployments, newest first, each with the contract's fields."""
    document = fleet.json("history", *args)
    assert set(document) == {"deployments"}
    for deployment in document["deployments"]:
        assert set(deployment) >= HISTORY_FIELDS, deployment
    return document["deployments"]


def host_results(fleet: Any, deployment_id: int) -> dict[str, dict[str, Any]]:
    """`conveyor history --id N --json`: host name -> its outcome (one entry per host)."""
    hosts = fleet.json("history", "--id", str(deployment_id))["hosts"]
    by_name = {h["host"]: h for h in hosts}
    assert len(by_name) == len(hosts), f"a host appears more than once: {hosts}"
    return by_name


def regions_of(fleet: Any, *args: str) -> dict[str, tuple[str | None, bool]]:
    """`conveyor status ARGS --json` of the one environment named: region -> (release, consistent)."""
    document = fleet.json("status", *args)
    (env,) = document["environments"]
    return {r: (e["release"], e["consistent"]) for r, e in document["environments"][env]["regions"].items()}


def on_release(fleet: Any, env: str, release: str, region: str | None = None) -> None:
    """Every host (of a region) has `current` -> releases/`release`, complete."""
    currents = fleet.currents(env, region)
    assert currents == dict.fromkeys(currents, release)
    for reg, _role, host in fleet.hosts(env, region):
        fleet.assert_complete(env, reg, host, release)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def processes_mentioning(text: str) -> list[int]:
    """Live (not zombie) processes whose command line mentions `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if text in cmdline and stat[stat.rfind(")") + 2:].split()[0] != "Z":
            found.append(int(entry.name))
    return found


# -- 1 ----------------------------------------------------------------------------------------------------
def test_a_multi_region_deploy_moves_every_host_and_reports_it_in_status_and_history(make_fleet) -> None:
    fleet = make_fleet(config({"production": environment(["a", "b", "c"], waves=[["a"], ["b", "c"]])}))
    first = fleet.ship("production", "1")
    r1 = first["release"]
    assert first["status"] == "succeeded"
    second = fleet.ship("production", "2")
    r2 = second["release"]
    assert r2 != r1
    assert second["status"] == "succeeded"
    assert second["failed_hosts"] == []
    assert set(second["regions"]) == {"a", "b", "c"}

    on_release(fleet, "production", r2)
    for region, role, host in fleet.hosts("production"):
        directory = fleet.host_dir("production", region, host)
        assert os.readlink(directory / "current") == f"releases/{r2}"
        assert fleet.releases_on("production", region, host) == {r1, r2}
        assert list((directory / "incoming").iterdir()) == []
        # The restart ran on this host, with the documented variables.
        assert (directory / "serving").read_text().split() == [r2, host, region, role, "deploy"]

    status = fleet.json("status")
    assert set(status) == {"environments"}
    assert set(status["environments"]) == {"production"}
    regions = status["environments"]["production"]["regions"]
    assert set(regions) == {"a", "b", "c"}
    for region, entry in regions.items():
        assert entry["release"] == r2
        assert entry["consistent"] is True
        expected = [{"name": h, "role": role, "release": r2} for _r, role, h in fleet.hosts("production", region)]
        assert [{k: h[k] for k in ("name", "role", "release")} for h in entry["hosts"]] == expected
    assert regions_of(fleet, "production", "--verify") == dict.fromkeys("abc", (r2, True))

    deployments = history(fleet)
    assert [d["release"] for d in deployments] == [r2, r1]  # newest first
    newest, oldest = deployments
    assert newest["id"] > oldest["id"]
    assert (newest["environment"], newest["regions"], newest["kind"]) == ("production", ["a", "b", "c"], "deploy")
    assert (newest["previous"], oldest["previous"]) == (r1, None)
    assert (newest["status"], newest["user"], newest["failed_hosts"]) == ("succeeded", "alice", [])
    started = datetime.fromisoformat(newest["started_at"])
    finished = datetime.fromisoformat(newest["finished_at"])
    assert started.tzinfo is not None
    assert finished.tzinfo is not None
    assert datetime.fromisoformat(oldest["finished_at"]) <= started <= finished


# -- 2 ----------------------------------------------------------------------------------------------------
def test_a_host_failing_its_restart_switches_its_region_back_but_not_the_rest_of_its_wave(make_fleet) -> None:
    # Waves [[a], [b, c]]: b-web-2 refuses release 2. a (an earlier wave) has finished; c moves beside b.
    fleet = make_fleet(config({"production": environment(["a", "b", "c"], waves=[["a"], ["b", "c"]])},
                              web_restart=fails_on("b-web-2", "2"), web={"max_failures": 0}))
    r1 = fleet.ship("production", "1")["release"]

    result = fleet.ship("production", "2", expect=1)
    r2 = result["release"]
    assert result["status"] == "rolled_back"
    assert result["failed_hosts"] == ["b-web-2"]  # b-web-1 was switched back with its region, it did not fail
    assert {r: result["regions"][r]["status"] for r in "abc"} == {
        "a": "succeeded", "b": "rolled_back", "c": "succeeded"}  # a region of the same wave is not undone

    on_release(fleet, "production", r1, "b")
    on_release(fleet, "production", r2, "a")
    on_release(fleet, "production", r2, "c")
    # The canary had moved: it was switched back and restarted on release 1.
    serving = fleet.host_dir("production", "b", "b-web-1") / "serving"
    assert serving.read_text().split() == [r1, "b-web-1", "b", "web", "rollback"]

    newest = history(fleet)[0]
    assert (newest["id"], newest["kind"], newest["release"]) == (result["id"], "deploy", r2)
    assert newest["status"] == "rolled_back"
    assert newest["failed_hosts"] == ["b-web-2"]

    hosts = host_results(fleet, newest["id"])
    assert hosts["b-web-2"]["step"] == "restart"
    assert hosts["b-web-2"]["exit_code"] == 7
    assert "refuses version 2" in hosts["b-web-2"]["output_tail"]
    assert hosts["b-web-2"]["release"] == r1
    assert (hosts["b-web-1"]["status"], hosts["b-web-1"]["release"]) == ("rolled_back", r1)
    assert all(hosts[h]["status"] == "succeeded" for _r, _role, h in fleet.hosts("production", "a"))

    assert regions_of(fleet, "production") == {"a": (r2, True), "b": (r1, True), "c": (r2, True)}


def test_a_failure_in_the_first_wave_leaves_later_waves_untouched(make_fleet) -> None:
    fleet = make_fleet(config({"production": environment(["a", "b", "c"], waves=[["b"], ["a", "c"]])},
                              web_restart=fails_on("b-web-2", "2")))
    r1 = fleet.ship("production", "1")["release"]
    journals = {(r, h): fleet.host_dir("production", r, h) / ".conveyor" / "journal.jsonl"
                for r, _role, h in fleet.hosts("production") if r != "b"}
    before = {key: path.read_text() for key, path in journals.items()}

    result = fleet.ship("production", "2", expect=1)
    assert result["status"] == "rolled_back"
    assert {r: result["regions"][r]["status"] for r in "abc"} == {
        "a": "skipped", "b": "rolled_back", "c": "skipped"}
    assert result["failed_hosts"] == ["b-web-2"]

    on_release(fleet, "production", r1)
    for (region, host), path in journals.items():
        assert fleet.releases_on("production", region, host) == {r1}  # nothing was even sent
        assert path.read_text() == before[region, host]
    newest = history(fleet)[0]
    assert (newest["status"], newest["failed_hosts"]) == ("rolled_back", ["b-web-2"])


def test_the_history_of_a_deployment_lists_every_host_it_was_to_move(make_fleet) -> None:
    # `deploy --json` reports every host, those never reached as `pending`; the stored history must too.
    fleet = make_fleet(config({"production": environment(["b", "a"], waves=[["b"], ["a"]], web=3, batch=1)},
                              web_restart=fails_on("b-web-2", "2")))
    fleet.ship("production", "1")
    result = fleet.ship("production", "2", expect=1)
    reported = {h["host"]: h["status"] for region in result["regions"].values() for h in region["hosts"]}
    assert reported["b-web-3"] == reported["a-web-1"] == "pending"
    stored = {name: h["status"] for name, h in host_results(fleet, result["id"]).items()}
    assert stored == reported


# -- 3 ----------------------------------------------------------------------------------------------------
def test_failures_within_max_failures_succeed_but_leave_the_region_inconsistent(make_fleet) -> None:
    fleet = make_fleet(config({"staging": environment(["a", "b"], web=4, batch=0)},
                              web_restart=fails_on("b-web-3", "2"), web={"max_failures": "50%"}))
    r1 = fleet.ship("staging", "1")["release"]

    result = fleet.ship("staging", "2", expect=0)
    r2 = result["release"]
    assert result["status"] == "succeeded"
    assert result["failed_hosts"] == ["b-web-3"]

    # The failed host does not keep serving the release that failed on it; the others run release 2.
    assert fleet.currents("staging", "b") == {"b-web-1": r2, "b-web-2": r2, "b-web-3": r1, "b-web-4": r2}
    on_release(fleet, "staging", r2, "a")

    newest = history(fleet)[0]
    assert (newest["status"], newest["failed_hosts"]) == ("succeeded", ["b-web-3"])
    failed = host_results(fleet, newest["id"])["b-web-3"]
    assert (failed["step"], failed["exit_code"]) == ("restart", 7)

    for args in (("status",), ("status", "staging", "--verify")):
        regions = fleet.json(*args)["environments"]["staging"]["regions"]
        assert (regions["b"]["release"], regions["b"]["consistent"]) == (None, False), args
        assert {h["name"]: h["release"] for h in regions["b"]["hosts"]} == {
            "b-web-1": r2, "b-web-2": r2, "b-web-3": r1, "b-web-4": r2}, args
        assert (regions["a"]["release"], regions["a"]["consistent"]) == (r2, True), args


# -- 4 ----------------------------------------------------------------------------------------------------
def test_rolling_back_one_region_goes_back_a_release_at_a_time_without_transfer(make_fleet) -> None:
    fleet = make_fleet(config({"production": environment(["a", "b", "c"], web=2)}))
    r1, r2, r3 = (fleet.ship("production", v)["release"] for v in ("1", "2", "3"))
    release_dirs = {(h, r): fleet.host_dir("production", "b", h) / "releases" / r
                    for _reg, _role, h in fleet.hosts("production", "b") for r in (r1, r2)}
    before = {key: (path.stat().st_ino, path.stat().st_mtime_ns) for key, path in release_dirs.items()}

    back = fleet.json("rollback", "production", "--region", "b", "--yes")
    assert (back["kind"], back["status"], back["release"]) == ("rollback", "succeeded", r2)
    assert set(back["regions"]) == {"b"}
    assert [h["transferred"] for h in back["regions"]["b"]["hosts"]] == [False] * 3
    on_release(fleet, "production", r2, "b")
    on_release(fleet, "production", r3, "a")
    on_release(fleet, "production", r3, "c")
    assert (fleet.host_dir("production", "b", "b-batch-1") / "serving").read_text().split() == [
        r2, "b-batch-1", "b", "batch", "rollback"]

    again = fleet.json("rollback", "production", "--region", "b", "--yes")
    assert (again["status"], again["release"]) == ("succeeded", r1)  # further back, not forth to release 3
    on_release(fleet, "production", r1, "b")
    on_release(fleet, "production", r3, "a")
    after = {key: (path.stat().st_ino, path.stat().st_mtime_ns) for key, path in release_dirs.items()}
    assert after == before  # switched to what was on disk; nothing was unpacked again
    assert [h["transferred"] for h in again["regions"]["b"]["hosts"]] == [False] * 3

    deployments = history(fleet, "production", "-n", "2")
    assert [(d["kind"], d["release"], d["previous"], d["regions"], d["status"]) for d in deployments] == [
        ("rollback", r1, r2, ["b"], "succeeded"), ("rollback", r2, r3, ["b"], "succeeded")]
    assert regions_of(fleet, "production") == {"a": (r3, True), "b": (r1, True), "c": (r3, True)}


# -- 5 ----------------------------------------------------------------------------------------------------
def test_pruning_keeps_keep_releases_and_never_current_or_previous(make_fleet) -> None:
    fleet = make_fleet(config({"staging": environment(["a"], web=2)}, keep_releases=2))
    deployed: list[str] = []
    for version in ("1", "2", "3", "4"):
        deployed.append(fleet.ship("staging", version)["release"])
        for region, _role, host in fleet.hosts("staging"):
            on_disk = fleet.releases_on("staging", region, host)
            assert fleet.current("staging", region, host) == deployed[-1]
            assert set(deployed[-2:]) <= on_disk  # current and the rollback target
            assert on_disk <= set(deployed)
            # keep_releases 2; an old release may outlive one deploy when it is not among the oldest by name.
            assert min(len(deployed), 2) <= len(on_disk) <= 3, on_disk
            for name in on_disk:
                fleet.assert_complete("staging", region, host, name)
            assert list((fleet.host_dir("staging", region, host) / "incoming").iterdir()) == []
    for region, _role, host in fleet.hosts("staging"):
        assert deployed[0] not in fleet.releases_on("staging", region, host)

    # The rollback target survived pruning: rolling back needs no transfer.
    back = fleet.json("rollback", "staging", "--yes")
    assert (back["status"], back["release"]) == ("succeeded", deployed[-2])
    assert [h["transferred"] for h in back["regions"]["a"]["hosts"]] == [False] * 3
    on_release(fleet, "staging", deployed[-2])


def test_pruning_keeps_the_newest_releases_when_two_were_built_in_the_same_second(make_fleet) -> None:
    fleet = make_fleet(config({"staging": environment(["a"], web=1, batch=0)}, keep_releases=3))
    twin = fleet.root / "conveyor-twin.yml"
    twin.write_text(yaml.safe_dump({**fleet.settings, "artifact": {"path": "twin"}}, sort_keys=False))
    for folder, version in (("app", "x"), ("twin", "y")):
        (fleet.root / folder).mkdir(exist_ok=True)
        (fleet.root / folder / "VERSION").write_text(version)
    # Two builds back to back, usually within one second: ids must still sort in build order.
    older = fleet.run("-c", str(fleet.cfg), "build", "--json").json()["id"]
    newer = fleet.run("-c", str(twin), "build", "--json").json()["id"]
    assert older < newer
    fleet.deploy("staging", older)
    fleet.deploy("staging", newer)
    third = fleet.ship("staging", "3")["release"]
    fourth = fleet.ship("staging", "4")["release"]
    # keep_releases 3: the three newest stay, and `older` is the one to go.
    assert fleet.releases_on("staging", "a", "a-web-1") == {newer, third, fourth}


# -- 6 ----------------------------------------------------------------------------------------------------
def test_a_locked_environment_blocks_deploys_until_it_is_unlocked(make_fleet) -> None:
    fleet = make_fleet(config({"production": environment(["a"], web=2)}))
    r1 = fleet.ship("production", "1")["release"]
    r2 = fleet.build("2")

    fleet.run("lock", "production", "--reason", "month end", user="carol")
    held = fleet.run("deploy", "production", "--release", r2, "--yes", "--json", expect=3, user="alice")
    assert "carol" in held.stderr  # the holder
    assert "month end" in held.stderr  # and why
    assert held.json()["exit_code"] == 3
    assert "month end" in held.json()["error"]
    on_release(fleet, "production", r1)
    assert all(fleet.releases_on("production", "a", h) == {r1} for _r, _role, h in fleet.hosts("production"))

    newest = history(fleet)[0]
    assert (newest["status"], newest["kind"], newest["release"], newest["user"]) == ("blocked", "deploy", r2, "alice")
    assert "month end" in fleet.run("rollback", "production", "--to", r1, "--yes", expect=3).stderr  # rollbacks too
    on_release(fleet, "production", r1)

    fleet.run("unlock", "production", user="carol")
    assert fleet.deploy("production", r2)["status"] == "succeeded"
    on_release(fleet, "production", r2)


# -- 7 ----------------------------------------------------------------------------------------------------
def test_production_refuses_a_release_that_has_not_succeeded_in_staging(make_fleet) -> None:
    fleet = make_fleet(config({
        "staging": environment(["s"], web=1, batch=0),
        "production": environment(["a", "b"], web=2, promote_from="staging"),
    }))
    r1 = fleet.build("1")
    refused = fleet.run("deploy", "production", "--release", r1, "--yes", expect=3)
    assert "staging" in refused.stderr
    assert not (fleet.root / ".conveyor" / "hosts" / "production").exists()

    fleet.deploy("staging", r1)
    fleet.deploy("production", r1)
    on_release(fleet, "production", r1)
    first_only = fleet.run("rollback", "staging", "--yes", expect=2)  # nothing to go back to
    assert "no previous release" in first_only.stderr
    on_release(fleet, "staging", r1)

    r2 = fleet.build("2")
    fleet.run("deploy", "production", "--release", r2, "--yes", expect=3)
    on_release(fleet, "production", r1)
    for region, _role, host in fleet.hosts("production"):
        assert fleet.releases_on("production", region, host) == {r1}
    assert [(d["status"], d["release"]) for d in history(fleet, "production")] == [
        ("blocked", r2), ("succeeded", r1), ("blocked", r1)]


def test_rolling_back_to_a_release_that_never_passed_staging_is_refused(make_fleet) -> None:
    # `--to` names any built release: a "rollback" to one staging never saw would bypass promote_from.
    fleet = make_fleet(config({
        "staging": environment(["s"], web=1, batch=0),
        "production": environment(["a"], web=1, batch=0, promote_from="staging"),
    }))
    r1 = fleet.build("1")
    fleet.deploy("staging", r1)
    fleet.deploy("production", r1)
    r2 = fleet.build("2")  # never deployed anywhere
    refused = fleet.run("rollback", "production", "--to", r2, "--yes", expect=None)
    assert refused.code in (2, 3), str(refused)  # refused as a gate (3) or as a bad --to (2)
    on_release(fleet, "production", r1)
    assert fleet.releases_on("production", "a", "a-web-1") == {r1}


# -- 8 ----------------------------------------------------------------------------------------------------
def test_a_killed_deploy_leaves_complete_releases_and_the_next_deploy_finishes_the_job(make_fleet, tmp_path) -> None:
    marker, go = tmp_path / "marker", tmp_path / "go"
    # a-web-2's restart of release 2 hangs until `go` exists, then fails: it never finished while we ran.
    hold = (f'if [ "$CONVEYOR_HOST" = a-web-2 ] && [ "$(cat VERSION)" = 2 ] && [ ! -f "{go}" ]; then '
            f'echo $$ > "{marker}"; i=0; while [ ! -f "{go}" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; '
            f'exit 9; fi; {SERVE}')
    fleet = make_fleet(config({"staging": environment(["a", "b"])}, web_restart=hold))
    r1 = fleet.ship("staging", "1")["release"]
    r2 = fleet.build("2")

    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(fleet.command("deploy", "staging", "--release", r2, "--yes"), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=fleet.env_vars(),
                                cwd=fleet.root, start_new_session=True)
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, 30, "a-web-2's restart to start")
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()
        # While it runs: history says `running`, and the lock refuses a second deploy, naming the holder.
        running = history(fleet)[0]
        assert (running["status"], running["release"]) == ("running", r2)
        second = fleet.run("deploy", "staging", "--release", r2, "--yes", expect=3)
        assert str(proc.pid) in second.stderr
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        go.touch()  # lets the orphaned restart (in its own session) finish
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    wait_for(lambda: not processes_mentioning(str(fleet.root)), 30, "the orphaned host scripts to exit")

    for region, _role, host in fleet.hosts("staging"):
        assert fleet.current("staging", region, host) in {r1, r2}, host
        on_disk = fleet.releases_on("staging", region, host)
        assert all(RELEASE_ID.match(name) for name in on_disk), (host, on_disk)  # no partial directories
        for name in on_disk:
            fleet.assert_complete("staging", region, host, name)
    assert fleet.current("staging", "a", "a-web-1") == r2  # the canary had finished
    assert fleet.current("staging", "a", "a-web-3") == r1  # the batch after a-web-2 never started
    serving = fleet.host_dir("staging", "a", "a-web-2") / "serving"
    assert serving.read_text().split()[0] == r1  # switched, but its restart never completed

    deployments = {d["id"]: d for d in history(fleet)}
    assert deployments[running["id"]]["status"] == "interrupted"
    assert deployments[running["id"]]["finished_at"] is not None

    again = fleet.deploy("staging", r2)  # the dead holder's lock is taken over at once
    assert again["status"] == "succeeded"
    on_release(fleet, "staging", r2)
    assert serving.read_text().split() == [r2, "a-web-2", "a", "web", "deploy"]  # restarted this time
    assert [d["status"] for d in history(fleet)] == ["succeeded", "blocked", "interrupted", "succeeded"]
    assert regions_of(fleet, "staging", "--verify") == {"a": (r2, True), "b": (r2, True)}

    # The interrupted run did not muddle what each host ran before: one rollback brings all back to release 1.
    back = fleet.json("rollback", "staging", "--yes")
    assert (back["status"], back["release"]) == ("succeeded", r1)
    on_release(fleet, "staging", r1)


# -- 9 ----------------------------------------------------------------------------------------------------
def test_an_unknown_environment_region_or_release_is_a_clear_usage_error(make_fleet) -> None:
    fleet = make_fleet(config({"staging": environment(["a"], web=1, batch=0)}))
    r1 = fleet.build("1")

    unknown = fleet.run("deploy", "prod", "--release", r1, "--yes", expect=2)
    assert "'prod'" in unknown.stderr
    assert "staging" in unknown.stderr  # what is known
    assert unknown.stdout == ""
    fleet.run("history", "prod", expect=2)
    for bad in ("20200101T000000Z-deadbeef", "no-such-release"):
        assert bad in fleet.run("deploy", "staging", "--release", bad, "--yes", expect=2).stderr
    assert "nowhere" in fleet.run("deploy", "staging", "--region", "nowhere", "--yes", expect=2).stderr
    assert not (fleet.root / ".conveyor" / "hosts").exists()
    assert history(fleet) == []


def test_an_artifact_that_leaves_the_release_is_refused_before_anything_is_shipped(make_fleet) -> None:
    fleet = make_fleet(config({"staging": environment(["a"], web=1, batch=0)}, artifact={"path": "dist/shop.tgz"}))
    tarball = fleet.root / "dist" / "shop.tgz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as archive:
        for name, data in (("VERSION", b"1\n"), ("../evil", b"pwned\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    assert "../evil" in fleet.run("build", expect=2).stderr
    assert "../evil" in fleet.run("deploy", "staging", "--yes", expect=2).stderr
    assert fleet.json("releases") == {"releases": []}
    assert not (fleet.root / ".conveyor" / "hosts").exists()
    assert not (fleet.root / "evil").exists()
    assert not (fleet.root / "dist" / "evil").exists()


def test_deploy_json_prints_exactly_one_json_document(make_fleet) -> None:
    fleet = make_fleet(config({"staging": environment(["a"], web=2, batch=0)}, web_restart=fails_on("a-web-2", "2")))
    fleet.write_artifact("1")
    document = json.loads(fleet.run("deploy", "staging", "--yes", "--json").stdout)  # builds, then deploys
    assert (document["status"], document["regions"]["a"]["status"]) == ("succeeded", "succeeded")
    assert RELEASE_ID.match(document["release"])

    fleet.write_artifact("2")
    document = json.loads(fleet.run("deploy", "staging", "--yes", "--json", expect=1).stdout)
    assert (document["status"], document["failed_hosts"]) == ("rolled_back", ["a-web-2"])

    document = json.loads(fleet.run("deploy", "nowhere", "--yes", "--json", expect=2).stdout)
    assert document["exit_code"] == 2
    assert "nowhere" in document["error"]


def test_an_invalid_config_names_the_file_line_and_field(make_fleet) -> None:
    fleet = make_fleet(config({"staging": environment(["a"], web=1, batch=0)}, kep_releases=3))
    line = next(n for n, row in enumerate(fleet.cfg.read_text().splitlines(), 1) if row.startswith("kep_releases"))
    for args in (("validate",), ("deploy", "staging", "--yes")):
        result = fleet.run(*args, expect=2)
        assert re.search(rf"conveyor\.yml:{line}: kep_releases", result.stderr), str(result)
    assert not (fleet.root / ".conveyor" / "hosts").exists()


# -- compression ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_a_release_compressed_another_way_deploys_whole_then_as_a_delta_and_rolls_back(make_fleet,
                                                                                      compression) -> None:
    if compression == "zstd" and shutil.which("zstd") is None:
        pytest.skip("the zstd command is not installed")
    fleet = make_fleet(config({"production": environment(["a"], web=2)},
                              artifact={"path": "app", "compression": compression}))
    r1 = fleet.ship("production", "1")["release"]
    suffix = {"zstd": ".tar.zst", "none": ".tar"}[compression]
    assert (fleet.root / ".conveyor" / "artifacts" / f"{r1}{suffix}").is_file()
    assert fleet.json("releases")["releases"][0]["compression"] == compression
    on_release(fleet, "production", r1)
    second = fleet.ship("production", "2")
    r2 = second["release"]
    on_release(fleet, "production", r2)
    transfers = [h["transfer"] for h in fleet.json("history", "--id", str(second["id"]))["hosts"]]
    assert transfers, second
    assert all(t.startswith(f"delta from {r1}") for t in transfers), transfers
    fleet.run("rollback", "production", "--yes")
    on_release(fleet, "production", r1)


def test_hosts_without_zstd_refuse_a_zstd_release_before_anything_is_sent(make_fleet, tmp_path) -> None:
    fleet = make_fleet(config({"production": environment(["a"], web=1, batch=0)},
                              artifact={"path": "app", "compression": "zstd"}))
    fleet.write_artifact("1")
    bin_dir = tmp_path / "bin-without-zstd"
    bin_dir.mkdir()
    for tool in ("sh", "tar", "gzip", "sha256sum", "mkdir", "ln", "mv", "rm", "tee", "cat", "mkfifo", "readlink",
                 "tail", "cp", "dirname", "printf", "git", "touch", "echo"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = fleet.env_vars() | {"PATH": str(bin_dir)}
    done = subprocess.run(fleet.command("deploy", "production", "--yes", "--json"), capture_output=True, text=True,
                          env=env, cwd=fleet.root, timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["failed_hosts"] == ["a-web-1"]
    hosts = fleet.json("history", "--id", str(result["id"]))["hosts"]
    assert "zstd, which this host lacks" in hosts[0]["error"], hosts
    assert fleet.currents("production") == {"a-web-1": None}
    assert fleet.releases_on("production", "a", "a-web-1") == set()


def _without_zstd(fleet: Any, tmp_path: Path) -> dict[str, str]:
    """The environment of a `conveyor` run whose local hosts find no zstd command (the controller needs none)."""
    bin_dir = tmp_path / "bin-without-zstd"
    if not bin_dir.is_dir():
        bin_dir.mkdir()
        for tool in ("sh", "tar", "gzip", "sha256sum", "mkdir", "ln", "mv", "rm", "tee", "cat", "mkfifo",
                     "readlink", "tail", "cp", "dirname", "printf", "git", "touch", "echo", "find", "awk", "sed",
                     "tr", "head", "sort", "date", "wc", "cut", "ls", "grep", "env", "sleep", "kill", "stat"):
            found = shutil.which(tool)
            if found:
                (bin_dir / tool).symlink_to(found)
    return fleet.env_vars() | {"PATH": str(bin_dir)}


def test_auto_compression_stores_zstd_and_sends_hosts_without_zstd_a_gzip_copy_made_once(make_fleet,
                                                                                         tmp_path) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("the zstd command is not installed")
    fleet = make_fleet(config({"production": environment(["a"], web=2, batch=0)}))  # compression: the default
    store = fleet.root / ".conveyor" / "artifacts"
    r1 = fleet.build("1")
    assert (store / f"{r1}.tar.zst").is_file()
    assert not (store / f"{r1}.tar.gz").exists()
    assert fleet.json("releases")["releases"][0]["compression"] == "zstd"
    plan = fleet.json("plan", "production", "--release", r1)
    assert plan["compression"] == {"stored": "zstd", "setting": "auto", "without_zstd": [], "fallback": "gzip"}

    def run(*args: str) -> Any:
        done = subprocess.run(fleet.command(*args, "--json"), capture_output=True, text=True,
                              env=_without_zstd(fleet, tmp_path), cwd=fleet.root, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        return json.loads(done.stdout)

    first = run("deploy", "production", "--release", r1, "--yes")
    on_release(fleet, "production", r1)
    hosts = fleet.json("history", "--id", str(first["id"]))["hosts"]
    assert {h["transfer"] for h in hosts} == {"full, gzip (no zstd on the host)"}, hosts
    copies = sorted(p.name for p in (store / "encodings").iterdir() if not p.name.startswith("."))
    assert copies == [f"{r1}.gzip.json", f"{r1}.tar.gz"], copies  # one copy for both hosts
    made = (store / "encodings" / f"{r1}.tar.gz").stat().st_mtime_ns
    # Remembered per host: the plan names them before anything is sent.
    plan = fleet.json("plan", "production", "--release", r1)
    assert plan["compression"]["without_zstd"] == ["a-web-1", "a-web-2"], plan["compression"]
    assert "hosts without zstd, sent a gzip copy: a-web-1, a-web-2" in fleet.run("plan", "production").stdout
    # The next release travels as a delta, compressed so these hosts can read it.
    r2 = fleet.build("2")
    second = run("deploy", "production", "--release", r2, "--yes")
    on_release(fleet, "production", r2)
    transfers = [h["transfer"] for h in fleet.json("history", "--id", str(second["id"]))["hosts"]]
    assert all(t.startswith(f"delta from {r1}") for t in transfers), transfers
    assert list((store / "deltas").glob(f"{r2}.from-{r1}.tar.gz")), sorted((store / "deltas").iterdir())
    # A rollback to r1 on hosts that no longer have it reuses the copy made the first time.
    for _region, _role, host in fleet.hosts("production"):
        shutil.rmtree(fleet.host_dir("production", "a", host) / "releases" / r1)
    run("rollback", "production", "--to", r1, "--yes")
    on_release(fleet, "production", r1)
    assert (store / "encodings" / f"{r1}.tar.gz").stat().st_mtime_ns == made
    # Once the hosts have zstd, they get the zstd tarball, and the plan stops naming them.
    fleet.deploy("production", r2)
    assert fleet.json("plan", "production", "--release", r2)["compression"]["without_zstd"] == []


# -- one round trip per host for a rollback the state store can plan --------------------------------------
def _recorded(fleet: Any, monkeypatch: pytest.MonkeyPatch, kind: str, request: Any) -> tuple[Any, Any]:
    """Deploy or roll back in-process through a recording transport: the result, and the recorder."""
    from conveyor.operations.deploy import deploy, rollback
    from conveyor.operations.workspace import Workspace
    from conveyor.transport.mock import MockTransport

    monkeypatch.chdir(fleet.root)
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    monkeypatch.setenv("CONVEYOR_USER", "alice")
    ws = Workspace.load(fleet.cfg)
    # Nothing scripted: every command runs on the local hosts, and is recorded on the way.
    recorder = MockTransport(passthrough=ws.transport("production"))
    ws.transports["production"] = recorder
    try:
        result = (rollback if kind == "rollback" else deploy)(ws, request, subscribers=[])
    finally:
        ws.close()
    return result, recorder


def _rollback_steps(fleet: Any, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, dict[str, list[str]]]:
    """Roll back in-process, recording every step each host went through."""
    from conveyor.operations.deploy import Request

    result, recorder = _recorded(fleet, monkeypatch, "rollback", Request("production", regions=list(args)))
    return result, recorder.steps()


def test_a_rollback_the_store_can_plan_switches_each_host_in_one_round_trip(make_fleet, monkeypatch) -> None:
    fleet = make_fleet(config({"production": environment(["a", "b"], web=2)}))
    r1 = fleet.ship("production", "1")["release"]
    r2 = fleet.ship("production", "2")["release"]
    result, steps = _rollback_steps(fleet, monkeypatch)
    assert result.release == r1
    assert result.status == DeploymentStatus.SUCCEEDED, result.message
    # No probe: the switch itself checks, on the host, that it runs r2 and that r2 replaced r1.
    assert steps == {host: ["activate"] for _r, _role, host in fleet.hosts("production")}
    on_release(fleet, "production", r1)
    newest = fleet.json("history")["deployments"][0]
    assert (newest["kind"], newest["release"], newest["previous"]) == ("rollback", r1, r2)
    assert regions_of(fleet, "production", "--verify") == dict.fromkeys("ab", (r1, True))


def _calls(fleet: Any, monkeypatch: pytest.MonkeyPatch, kind: str, release: str | None = None) -> list[tuple[str, str]]:
    """Deploy `release` or roll back in-process: (host, step) of every call the hosts saw, in order."""
    from conveyor.operations.deploy import Request

    result, recorder = _recorded(fleet, monkeypatch, kind, Request("production", release=release))
    assert result.status == DeploymentStatus.SUCCEEDED, result.message
    return [(call.host.name, call.step) for call in recorder.calls]


def test_a_rollback_lets_each_host_go_once_it_is_done_a_deploy_keeps_them_to_the_end(make_fleet,
                                                                                      monkeypatch) -> None:
    # One web host at a time (canary, then batches of one): a rollback closes a host's connection before the
    # next host starts, since nothing of it comes back to that host; a deploy keeps every connection for a
    # switch back, and closes them together at the end.
    fleet = make_fleet(config({"production": environment(["a"], web=3, batch=0)}))
    r1 = fleet.ship("production", "1")["release"]
    fleet.ship("production", "2")
    calls = _calls(fleet, monkeypatch, "rollback")
    webs = ["a-web-1", "a-web-2", "a-web-3"]
    assert [step for host, step in calls if host == "a-web-1"][-1] == "close"
    for done, starting in itertools.pairwise(webs):
        assert calls.index((done, "close")) < calls.index((starting, "connect")), calls
    calls = _calls(fleet, monkeypatch, "deploy", r1)
    closes = [i for i, (_host, step) in enumerate(calls) if step == "close"]
    assert len(closes) == 3
    assert min(closes) > max(i for i, (_host, step) in enumerate(calls) if step != "close"), calls


def test_a_host_that_is_not_what_the_store_says_is_read_first_and_nothing_else_changes(make_fleet,
                                                                                   monkeypatch) -> None:
    fleet = make_fleet(config({"production": environment(["a"], web=3, batch=0)}))
    r1 = fleet.ship("production", "1")["release"]
    r2 = fleet.ship("production", "2")["release"]
    r3 = fleet.ship("production", "3")["release"]
    # Behind Conveyor's back: a-web-2 was pointed at r1 by hand; a-web-3 lost r2 (the rollback target).
    web2 = fleet.host_dir("production", "a", "a-web-2")
    (web2 / "current").unlink()
    (web2 / "current").symlink_to(f"releases/{r1}")
    web3 = fleet.host_dir("production", "a", "a-web-3")
    shutil.rmtree(web3 / "releases" / r2)
    result, steps = _rollback_steps(fleet, monkeypatch)
    assert result.release == r2
    assert steps["a-web-1"] == ["activate"]
    assert steps["a-web-2"] == ["activate", "probe", "activate"]   # refused on the host, read, then moved
    assert steps["a-web-3"] == ["activate", "probe", "receive_delta", "activate"]
    assert fleet.currents("production") == {"a-web-1": r2, "a-web-2": r2, "a-web-3": r2}
    # a-web-3 got r2 back from the store (it had lost it); every host is complete.
    for host in ("a-web-1", "a-web-2", "a-web-3"):
        fleet.assert_complete("production", "a", host, r2)
    assert r3 in fleet.releases_on("production", "a", "a-web-3")
