"""Waves that prove themselves: the real `conveyor` CLI, a local fleet, a real Prometheus and Alertmanager.

Each release ships a file `ratio` (release 1: 0.001, release 2: 0.5). A host's restart copies it to
`<test dir>/ratios/<region>/<host>` (written beside, then renamed into place), and the exporter of the
`stack` fixture (promstack.py) serves every such file as `app_error_ratio{region, host}`, which Prometheus
scrapes every second. So deploying release 2 really makes the region's error ratio climb, and switching a
host back to release 1 (whose restart runs again) really brings it down.

Release 1 goes out with a plain config (no checks, no bakes) to keep the module fast; the config with the
canary bake, bake and checks under test is written before release 2. Durations are seconds; a failing bake
ends at its first failed measurement, so the failure tests give the bake a generous 5s that they never wait
out. Tests share one Prometheus and Alertmanager, so each uses its own region names and alert names.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from promstack import Stack

pytestmark = pytest.mark.integration

ENV = "production"
RATIOS = {"1": "0.001", "2": "0.5"}  # VERSION -> the error ratio that release makes its hosts report
MEASUREMENT_FIELDS = {"phase", "check", "kind", "scope", "value", "condition", "verdict", "at", "detail"}


def restart(ratios: Path) -> str:
    """Restart of every host: publish the started release's `ratio` as this host's error ratio."""
    folder = shlex.quote(str(ratios))
    return (f'd={folder}/"$CONVEYOR_REGION" && mkdir -p "$d" && cp ratio "$d/.$CONVEYOR_HOST" '
            f'&& mv "$d/.$CONVEYOR_HOST" "$d/$CONVEYOR_HOST"')


def error_ratio(stack: Stack, **fields: Any) -> dict[str, Any]:
    """The environment's Prometheus check: the region's worst host must report less than 1% errors."""
    return {"prometheus": stack.prometheus.url, "query": 'max(app_error_ratio{region="$region"})',
            "condition": "result < 0.01", "interval": "0.5s", "timeout": "5s", **fields}


def settings(ratios: Path, regions: list[str], *, web: dict[str, Any] | None = None,
             **environment: Any) -> dict[str, Any]:
    """conveyor.yml as data: each region has three web hosts, moved canary first then one at a time,
    one wave per region in order."""
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "shared": ["log"],
        "roles": {"web": {"restart": restart(ratios), "canary": 1, "batch": 1, **(web or {})}},
        "environments": {ENV: {
            "transport": "local",
            "waves": [[r] for r in regions],
            **environment,
            "regions": {r: {"hosts": {"web": [f"{r}-web-{i}" for i in (1, 2, 3)]}} for r in regions},
        }},
    }


@pytest.fixture
def ratios(stack: Stack, tmp_path: Path) -> Iterator[Path]:
    """This test's folder of per-host error ratios, served by the exporter while the test runs."""
    folder = tmp_path / "ratios"
    folder.mkdir()
    stack.exporter.follow(folder)
    yield folder
    stack.exporter.unfollow(folder)


@pytest.fixture
def fleet_on_release_1(make_fleet: Callable[[dict[str, Any]], Any], ratios: Path,
                       stack: Stack) -> Callable[..., tuple[Any, str]]:
    """A fleet whose regions all run release 1 (deployed with a plain config), reporting a low error
    ratio that Prometheus has seen; then the config under test is written. Returns (fleet, release 1)."""

    def make(regions: list[str], *, web: dict[str, Any] | None = None, **environment: Any) -> tuple[Any, str]:
        fleet = make_fleet(settings(ratios, regions))
        # Every build of this fleet also ships `ratio` (shadowing the class's file list for this instance, so
        # write_artifact and assert_complete agree on it).
        base = type(fleet).artifact_files
        fleet.artifact_files = lambda version: {**base(version), "ratio": f"{RATIOS[version]}\n"}
        for region, _role, host in fleet.hosts(ENV):  # what release 1 will publish; Prometheus scrapes it meanwhile
            (ratios / region).mkdir(exist_ok=True)
            (ratios / region / f".{host}").write_text(f"{RATIOS['1']}\n")
            (ratios / region / f".{host}").rename(ratios / region / host)
        first = fleet.ship(ENV, "1")["release"]
        assert set(fleet.currents(ENV).values()) == {first}
        for region in regions:
            stack.answers(f'max(app_error_ratio{{region="{region}"}})', 0.001)
        fleet.settings = settings(ratios, regions, web=web, **environment)
        fleet.write_config()
        return fleet, first

    return make


def detail(fleet: Any, deployment_id: int) -> dict[str, Any]:
    """`conveyor history --id N --json`, every measurement checked for the documented fields."""
    document = fleet.json("history", "--id", str(deployment_id))
    for m in document["measurements"]:
        assert set(m) == MEASUREMENT_FIELDS, m
    return document


def currents(fleet: Any, region: str) -> set[str | None]:
    """The releases the hosts of a region point at."""
    return set(fleet.currents(ENV, region).values())


def ratio_files(ratios: Path, region: str) -> dict[str, str]:
    """host -> the error ratio its last restart published."""
    return {p.name: p.read_text().strip() for p in sorted((ratios / region).iterdir()) if not p.name.startswith(".")}


# -- a release that raises the error ratio ----------------------------------------------------------------


def test_a_canary_that_fails_its_bake_is_switched_back_and_later_waves_never_start(
        fleet_on_release_1: Callable[..., tuple[Any, str]], ratios: Path, stack: Stack) -> None:
    a, b = "canary-a", "canary-b"
    fleet, first = fleet_on_release_1([a, b], web={"canary_bake": "5s"}, checks=[error_ratio(stack)])

    result = fleet.ship(ENV, "2", expect=1)

    assert result["status"] == "rolled_back", result
    assert result["regions"][a]["status"] == "rolled_back", result
    assert "web canary bake failed" in result["regions"][a]["message"], result
    assert result["regions"][b]["status"] == "skipped", result
    assert result["failed_hosts"] == [f"{a}-web-1"], result
    hosts = {h["host"]: h for h in result["regions"][a]["hosts"]}
    assert hosts[f"{a}-web-1"]["status"] == "rolled_back", hosts  # the canary moved, failed its bake, came back
    assert {hosts[f"{a}-web-{i}"]["status"] for i in (2, 3)} == {"pending"}, hosts  # the rest never moved
    assert currents(fleet, a) == currents(fleet, b) == {first}
    assert all(result["release"] not in fleet.releases_on(ENV, b, host) for _r, _role, host in fleet.hosts(ENV, b))
    assert ratio_files(ratios, a) == dict.fromkeys([f"{a}-web-{i}" for i in (1, 2, 3)], "0.001")  # restarted on 1

    record = detail(fleet, result["id"])
    assert record["status"] == "rolled_back"
    baked = [m for m in record["measurements"] if m["phase"] == "canary_bake"]
    assert baked, record["measurements"]
    assert {m["scope"] for m in baked} == {f"region {a}"}, baked
    failed = [m for m in baked if m["verdict"] == "fail"]
    assert len(failed) == 1, baked
    assert baked[-1] == failed[0], baked  # the bake stopped at its first failure
    assert (failed[0]["kind"], failed[0]["condition"]) == ("prometheus", "result < 0.01"), failed
    assert float(failed[0]["value"]) == 0.5, failed
    assert "0.5 fails result < 0.01" in failed[0]["detail"], failed
    assert not [m for m in record["measurements"] if b in m["scope"]]


def test_a_wave_that_fails_its_bake_is_rolled_back_and_the_next_wave_never_starts(
        fleet_on_release_1: Callable[..., tuple[Any, str]], ratios: Path, stack: Stack) -> None:
    a, b = "wave-a", "wave-b"
    fleet, first = fleet_on_release_1([a, b], bake="5s", checks=[error_ratio(stack)])

    result = fleet.ship(ENV, "2", expect=1)

    assert result["status"] == "rolled_back", result
    assert result["regions"][a]["status"] == "rolled_back", result
    assert "bake failed" in result["regions"][a]["message"], result
    assert {h["status"] for h in result["regions"][a]["hosts"]} == {"rolled_back"}, result  # all 3 had moved
    assert result["regions"][b]["status"] == "skipped", result
    assert currents(fleet, a) == currents(fleet, b) == {first}
    assert set(ratio_files(ratios, a).values()) == {"0.001"}

    record = detail(fleet, result["id"])
    assert record["status"] == "rolled_back"
    assert {m["phase"] for m in record["measurements"]} == {"bake"}, record["measurements"]
    last = record["measurements"][-1]
    assert (last["verdict"], float(last["value"]), last["scope"]) == ("fail", 0.5, f"region {a}"), last
    assert not [m for m in record["measurements"] if b in m["scope"]]


def test_on_failure_halt_leaves_the_failed_wave_as_it_is(
        fleet_on_release_1: Callable[..., tuple[Any, str]], ratios: Path, stack: Stack) -> None:
    a, b = "halt-a", "halt-b"
    fleet, first = fleet_on_release_1([a, b], bake="5s", on_failure="halt", checks=[error_ratio(stack)])

    result = fleet.ship(ENV, "2", expect=1)

    assert result["status"] == "failed", result
    assert result["regions"][a]["status"] == "failed", result
    assert "bake failed" in result["regions"][a]["message"], result
    assert result["regions"][b]["status"] == "skipped", result
    assert currents(fleet, a) == {result["release"]}  # left on release 2 for a person to look at
    assert set(ratio_files(ratios, a).values()) == {"0.5"}
    assert currents(fleet, b) == {first}
    record = detail(fleet, result["id"])
    assert record["status"] == "failed"
    verdicts = [m["verdict"] for m in record["measurements"]]
    assert verdicts[-1] == "fail", verdicts

    # A person rolls the region back. Bakes judge new releases, not a rollback: with a canary bake
    # configured, the region's error ratio (still 0.5 on the hosts not yet switched back) must not stop
    # the rollback after its first host.
    fleet.settings["roles"]["web"]["canary_bake"] = "5s"
    fleet.write_config()
    back = fleet.json("rollback", ENV, "--region", a, "--yes")
    assert back["status"] == "succeeded", back
    assert currents(fleet, a) == {first}
    assert set(ratio_files(ratios, a).values()) == {"0.001"}


# -- a query that matches nothing ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["fail", "pass", "inconclusive"])
def test_an_empty_result_follows_on_empty(fleet_on_release_1: Callable[..., tuple[Any, str]], stack: Stack,
                                          policy: str) -> None:
    a, b = f"empty-{policy}-a", f"empty-{policy}-b"
    nothing = error_ratio(stack, query='max(app_error_ratio{region="$region", host="no-such-host"})',
                          on_empty=policy)
    fleet, first = fleet_on_release_1([a, b], bake="2s", checks=[nothing])

    if policy == "fail":
        result = fleet.ship(ENV, "2", expect=1)
        assert result["status"] == "rolled_back", result
        assert result["regions"][b]["status"] == "skipped", result
        assert currents(fleet, a) == currents(fleet, b) == {first}
        measurements = detail(fleet, result["id"])["measurements"]
        assert [m["verdict"] for m in measurements] == ["fail"], measurements
        assert measurements[0]["value"] is None
        assert "returned no series; on_empty: fail" in measurements[0]["detail"]
        return

    if policy == "pass":
        result = fleet.ship(ENV, "2")
        assert result["status"] == "succeeded", result
        assert currents(fleet, a) == currents(fleet, b) == {result["release"]}
        measurements = detail(fleet, result["id"])["measurements"]
        # The bake after wave a watched for 2s every 0.5s; the last wave is not baked.
        assert [(m["phase"], m["scope"], m["verdict"]) for m in measurements] == [("bake", f"region {a}", "pass")] * 5
        return

    held = fleet.ship(ENV, "2", expect=3)
    second = held["release"]
    assert held["status"] == "held", held
    assert held["regions"][a]["status"] == "held", held
    assert "inconclusive" in held["regions"][a]["message"], held
    assert "--resume" in held["regions"][a]["message"], held
    assert held["regions"][b]["status"] == "skipped", held
    assert currents(fleet, a) == {second}  # not rolled back: a person decides
    assert currents(fleet, b) == {first}  # the later wave did not start
    measurements = detail(fleet, held["id"])["measurements"]
    assert len(measurements) == 5, measurements  # inconclusive is not failure: the bake ran its whole 2s
    assert {(m["verdict"], m["value"]) for m in measurements} == {("inconclusive", None)}, measurements

    resumed = fleet.json("deploy", ENV, "--resume", str(held["id"]), "--yes")
    assert resumed["status"] == "succeeded", resumed
    assert resumed["id"] != held["id"], resumed
    assert resumed["release"] == second, resumed
    assert {h["status"] for h in resumed["regions"][a]["hosts"]} == {"unchanged"}, resumed
    assert {h["status"] for h in resumed["regions"][b]["hosts"]} == {"succeeded"}, resumed
    assert currents(fleet, a) == currents(fleet, b) == {second}
    again = detail(fleet, resumed["id"])["measurements"]
    assert not [m for m in again if m["phase"] == "bake" and m["scope"] == f"region {a}"], again
    statuses = [(d["id"], d["status"]) for d in fleet.json("history")["deployments"][:2]]
    assert statuses == [(resumed["id"], "succeeded"), (held["id"], "held")], statuses


# -- do not deploy into an incident ---------------------------------------------------------------------


def test_an_active_alert_for_a_region_refuses_the_deployment_and_names_the_alert(
        fleet_on_release_1: Callable[..., tuple[Any, str]], stack: Stack) -> None:
    a, b = "alert-a", "alert-b"
    watching = {"alerts": stack.alertmanager.url, "matchers": {"region": "$region"}, "timeout": "5s"}
    fleet, first = fleet_on_release_1([a, b], checks=[watching])
    stack.post_alert({"alertname": "CheckoutErrorsAlertA", "region": a, "severity": "page"},
                     lasts=timedelta(minutes=10))
    stack.post_alert({"alertname": "SomebodyElsesRegion", "region": "alert-elsewhere"},
                     lasts=timedelta(minutes=10))

    fleet.write_artifact("2")
    refused = fleet.run("deploy", ENV, "--yes", "--json", expect=3)
    assert "CheckoutErrorsAlertA" in refused.stderr, str(refused)
    assert f'region="{a}"' in refused.stderr, str(refused)
    assert "SomebodyElsesRegion" not in refused.stderr, str(refused)
    assert refused.json()["exit_code"] == 3
    for region in (a, b):
        assert currents(fleet, region) == {first}
        for _r, _role, host in fleet.hosts(ENV, region):
            assert fleet.releases_on(ENV, region, host) == {first}  # nothing was even sent
    latest = fleet.json("history")["deployments"][0]
    assert (latest["status"], latest["regions"]) == ("blocked", [a, b]), latest

    plan = fleet.run("plan", ENV, "--json", expect=3).json()  # plan stops where deploy would, with its code
    assert "CheckoutErrorsAlertA" in plan["holds"]["message"], plan["holds"]
    gate = {g["gate"]: g for g in plan["gates"]}["alerts"]
    assert gate["open"] is False, gate
    assert "CheckoutErrorsAlertA" in gate["detail"], gate

    fleet.settings["environments"][ENV]["regions"].pop(a)
    fleet.settings["environments"][ENV]["waves"] = [[b]]
    fleet.write_config()
    result = fleet.deploy(ENV, "latest")
    assert result["status"] == "succeeded", result
    assert currents(fleet, b) == {result["release"]} != {first}


# -- the plan says what will happen, and how long it will take -------------------------------------------


def test_plan_shows_canaries_batches_bakes_checks_and_an_estimate(
        make_fleet: Callable[[dict[str, Any]], Any], stack: Stack, tmp_path: Path) -> None:
    a, b = "plan-a", "plan-b"
    checks = [error_ratio(stack), {"alerts": stack.alertmanager.url, "matchers": {"region": "$region"}}]
    baked = settings(tmp_path, [a, b], web={"canary_bake": "5m"}, bake="10m", checks=checks)
    plain = copy.deepcopy(baked)
    del plain["roles"]["web"]["canary_bake"], plain["environments"][ENV]["bake"]

    fleet = make_fleet(baked)
    fleet.write_artifact("1")
    document = fleet.json("plan", ENV)

    assert [[region["region"] for region in wave] for wave in document["waves"]] == [[a], [b]]
    (role,) = document["waves"][0][0]["roles"]
    assert role["role"] == "web", role
    assert role["canary_bake"] == 300.0, role
    assert [(x["canary"], x["hosts"]) for x in role["batches"]] == [
        (True, [f"{a}-web-1"]), (False, [f"{a}-web-2"]), (False, [f"{a}-web-3"])], role
    assert document["bake"] == 600.0, document
    assert document["on_failure"] == "rollback", document
    assert document["checks"] == ['prometheus max(app_error_ratio{region="$region"}) ⇒ result < 0.01',
                                  "no active alert matching region=$region"], document
    gates = {g["gate"]: g for g in document["gates"]}
    assert gates["alerts"]["open"] is True, gates
    seconds = document["estimate"]["seconds"]
    assert seconds > 0, document["estimate"]

    plain_fleet = make_fleet(plain)
    plain_fleet.write_artifact("1")
    without = plain_fleet.json("plan", ENV)["estimate"]
    # One bake between the two waves and a canary bake in each region, on top of the host steps; with no
    # history yet, a host step is not guessed: the estimate is the bakes alone, and says so.
    assert seconds - without["seconds"] == pytest.approx(600 + 2 * 300), (seconds, without)
    assert without == {"seconds": 0.0, "per_host_step": None}
    assert document["estimate"]["per_host_step"] is None
    # A rollback does not bake.
    assert fleet.json("plan", ENV, "--rollback")["estimate"]["seconds"] == 0.0
