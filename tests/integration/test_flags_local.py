"""Feature flags rolled out like releases: the real `conveyor` CLI on a local fleet.

Each host's flags file is `<deploy_to>/shared/flags.json`. The web role's check reads it from the release
directory and fails on one host (the uk canary) once `new-checkout` is on there: the flag change is reverted on
that host, its region is halted and switched back, and the next wave never starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ENV = "production"
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
    window: false
  fast-path:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
    requires: {migration: 0042_add_col}
  new-api:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
    requires_release: ">= 29990101T000000Z-00000000"
"""
# Fails on uk-web-1 only, once new-checkout is on in its flags file (read through the release's shared/).
CANARY_CHECK = ("! grep -A1 '\"new-checkout\"' ../../shared/flags.json | grep -q '\"defaultVariant\": \"on\"' "
                "|| [ \"$CONVEYOR_HOST\" != uk-web-1 ]")


def settings(**flags: Any) -> dict[str, Any]:
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "shared": ["log"],
        "roles": {"web": {"canary": 1, "batch": 1, "checks": [{"command": CANARY_CHECK}]}},
        "environments": {
            "staging": {"transport": "local", "regions": {"uk": {"hosts": {"web": ["stg-web-1"]}}}},
            ENV: {
                "transport": "local",
                "waves": [["uk"], ["za"]],
                "regions": {"uk": {"hosts": {"web": ["uk-web-1", "uk-web-2"]}},
                            "za": {"hosts": {"web": ["za-web-1", "za-web-2"]}}},
            },
        },
        "flags": {"overrides": {ENV: {"za": {"banner": "festive"}}}, **flags},
    }


@pytest.fixture
def shop(make_fleet: Callable[[dict[str, Any]], Any]) -> Any:
    fleet = make_fleet(settings())
    (fleet.root / "flags").mkdir()
    (fleet.root / "flags" / "flags.yaml").write_text(FLAGS, encoding="utf-8")
    fleet.ship(ENV, "1")
    return fleet


def flags_file(fleet: Any, region: str, host: str) -> dict[str, Any] | None:
    path = fleet.host_dir(ENV, region, host) / "shared" / "flags.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def served(fleet: Any, region: str, host: str, flag: str) -> str | None:
    doc = flags_file(fleet, region, host)
    body = None if doc is None else doc["flags"].get(flag)
    return None if body is None else str(body["defaultVariant"])


def test_a_flag_change_goes_out_wave_by_wave_and_every_host_gets_its_regions_document(shop: Any) -> None:
    result = shop.json("flags", "set", ENV, "banner", "festive", "--reason", "winter", "--yes")
    assert result["status"] == "succeeded", result
    assert result["kind"] == "flags"
    for region, host in (("uk", "uk-web-1"), ("uk", "uk-web-2")):
        assert served(shop, region, host, "banner") == "festive"
        assert flags_file(shop, region, host)["$schema"] == "https://flagd.dev/schema/v0/flags.json"  # type: ignore[index]
    # za already served festive (conveyor.yml): its document does not change, so it is not moved at all.
    assert list(result["regions"]) == ["uk"]
    matrix = shop.json("flags", ENV)
    assert matrix["environments"][ENV]["regions"]["uk"]["banner"]["source"] == f"flags set {ENV}/*"
    assert matrix["environments"][ENV]["regions"]["za"]["banner"]["source"] == f"flags set {ENV}/*"
    history = shop.json("history", ENV)["deployments"][0]
    assert (history["kind"], history["status"]) == ("flags", "succeeded")


def test_a_failing_check_on_the_canary_reverts_it_there_and_the_change_goes_no_further(shop: Any) -> None:
    shop.json("flags", "set", ENV, "banner", "festive", "--region", "uk", "--reason", "a file to go back to",
              "--yes")
    before = {h: flags_file(shop, r, h) for r, _, h in shop.hosts(ENV)}
    result = shop.json("flags", "set", ENV, "new-checkout", "on", "--reason", "launch", "--yes", expect=1)
    assert result["status"] == "rolled_back", result
    hosts = {h["host"]: h for r in result["regions"].values() for h in r["hosts"]}
    assert hosts["uk-web-1"]["status"] == "rolled_back"
    assert hosts["uk-web-1"]["step"] == "check"
    assert hosts["uk-web-2"]["status"] == "pending"          # the batch after the canary never started
    assert {hosts["za-web-1"]["status"], hosts["za-web-2"]["status"]} == {"pending"}  # nor the next wave
    after = {h: flags_file(shop, r, h) for r, _, h in shop.hosts(ENV)}
    assert after == before
    assert served(shop, "uk", "uk-web-1", "new-checkout") == "off"
    matrix = shop.json("flags", ENV)["environments"][ENV]["regions"]
    assert {matrix[r]["new-checkout"]["variant"] for r in ("uk", "za")} == {"off"}


def test_a_percentage_rollout_writes_fractional_targeting(shop: Any) -> None:
    shop.json("flags", "rollout", ENV, "banner", "--variant", "festive", "--percent", "25", "--region", "uk",
              "--reason", "try a quarter", "--yes")
    body = flags_file(shop, "uk", "uk-web-2")["flags"]["banner"]  # type: ignore[index]
    assert body["targeting"] == {"fractional": [["festive", 25], ["plain", 75]]}
    assert body["defaultVariant"] == "plain"


def test_rollback_flags_reverts_the_last_flag_change(shop: Any) -> None:
    shop.json("flags", "set", ENV, "banner", "festive", "--region", "uk", "--reason", "winter", "--yes")
    assert served(shop, "uk", "uk-web-1", "banner") == "festive"
    result = shop.json("rollback", ENV, "--flags", "--yes")
    assert (result["kind"], result["status"]) == ("flags", "succeeded")
    assert served(shop, "uk", "uk-web-1", "banner") == "plain"
    assert shop.json("flags", ENV)["environments"][ENV]["regions"]["uk"]["banner"]["source"] == "file"


def test_flags_diff_names_what_differs_between_two_environments(shop: Any) -> None:
    diff = shop.json("flags", "diff", "staging", ENV)
    rows = {row["flag"]: row for row in diff["flags"]}
    assert rows["banner"]["same"] is False
    assert rows["banner"][ENV] == {"uk": "plain", "za": "festive"}
    assert rows["new-checkout"]["same"] is True
    text = shop.run("flags", "diff", "staging", ENV).stdout
    assert "≠ banner" in text


def test_a_bad_flag_file_changes_no_host(shop: Any) -> None:
    shop.json("flags", "set", ENV, "banner", "festive", "--reason", "winter", "--yes")
    before = {h: flags_file(shop, r, h) for r, _, h in shop.hosts(ENV)}
    (shop.root / "flags" / "flags.yaml").write_text(FLAGS.replace("defaultVariant: plain", "defaultVariant: gold"))
    failed = shop.run("flags", "set", ENV, "new-checkout", "on", "--reason", "x", "--yes", expect=2)
    assert "flags/flags.yaml:9: flags.banner.defaultVariant: 'gold' is not one of its variants" in failed.stderr
    assert {h: flags_file(shop, r, h) for r, _, h in shop.hosts(ENV)} == before
    assert shop.json("history", ENV)["deployments"][0]["status"] == "succeeded"  # nothing was even attempted


def test_an_override_naming_an_unknown_variant_in_conveyor_yml_is_a_config_error_with_its_line(shop: Any) -> None:
    shop.settings["flags"]["overrides"][ENV]["za"]["banner"] = "gold"
    shop.write_config()
    failed = shop.run("flags", ENV, expect=2)
    assert "conveyor.yml:" in failed.stderr
    assert "flags.overrides.production.za.banner: banner has no variant 'gold'" in failed.stderr


def test_switching_on_a_flag_whose_migration_is_not_applied_is_refused_and_changes_nothing(shop: Any) -> None:
    failed = shop.run("flags", "set", ENV, "fast-path", "on", "--reason", "x", "--yes", expect=3)
    assert "fast-path requires migration 0042_add_col, which is not applied there" in failed.stderr
    assert served(shop, "uk", "uk-web-1", "fast-path") == "off"  # as the deploy carried it
    assert shop.json("history", ENV)["deployments"][0]["status"] == "blocked"


def test_switching_on_a_flag_goes_once_its_migration_is_applied(shop: Any) -> None:
    from conveyor.state.store import Store

    store = Store(f"sqlite:///{shop.root / '.conveyor' / 'state.db'}", app="shop")
    for region in ("uk", "za"):
        store.record_migration(ENV, region, name="0042_add_col", phase="expand", cls="safe", sha256="0" * 64,
                               release="r", deployment_id=None)
    result = shop.json("flags", "set", ENV, "fast-path", "on", "--region", "za", "--reason", "x", "--yes")
    assert result["status"] == "succeeded"
    assert served(shop, "za", "za-web-1", "fast-path") == "on"


def test_switching_on_a_flag_that_needs_a_newer_release_is_refused(shop: Any) -> None:
    failed = shop.run("flags", "rollout", ENV, "new-api", "--percent", "10", "--reason", "x", "--yes", expect=3)
    assert "new-api requires release >= 29990101T000000Z-00000000, and hosts there run" in failed.stderr


def test_switching_a_flag_off_needs_nothing(shop: Any) -> None:
    result = shop.json("flags", "set", ENV, "new-api", "off", "--reason", "x", "--yes")
    assert result["status"] == "succeeded"


def test_a_flag_marked_window_false_changes_while_the_window_is_closed_and_it_is_audited(shop: Any) -> None:
    shop.settings["environments"][ENV]["window"] = "never"
    shop.settings["windows"] = {"never": {"timezone": "UTC", "allow": [{"dates": "2000-01-01"}]}}
    shop.write_config()
    held = shop.run("flags", "set", ENV, "new-checkout", "on", "--region", "za", "--reason", "x", "--yes",
                    expect=3)
    assert "window never is closed" in held.stderr
    result = shop.json("flags", "set", ENV, "banner", "festive", "--reason", "urgent", "--yes")
    assert result["status"] == "succeeded"
    from conveyor.state.store import Store

    events = Store(f"sqlite:///{shop.root / '.conveyor' / 'state.db'}", app="shop").events()
    assert any(e["kind"] == "flag_window_false" for e in events)


def test_a_flag_change_needs_a_reason(shop: Any) -> None:
    failed = shop.run("flags", "set", ENV, "banner", "festive", "--yes", expect=2)
    assert "needs --reason" in failed.stderr


def test_an_unknown_flag_or_variant_is_bad_input(shop: Any) -> None:
    assert "no flag 'nope'" in shop.run("flags", "set", ENV, "nope", "on", "--reason", "x", "--yes",
                                        expect=2).stderr
    assert "has no variant 'maybe'" in shop.run("flags", "set", ENV, "banner", "maybe", "--reason", "x", "--yes",
                                                expect=2).stderr


def test_on_change_runs_on_the_roles_hosts_after_their_file_changed(make_fleet: Callable[[dict[str, Any]], Any],
                                                                    tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    fleet = make_fleet(settings(on_change={"web": f'touch "{marks}/$CONVEYOR_HOST"'}))
    (fleet.root / "flags").mkdir()
    (fleet.root / "flags" / "flags.yaml").write_text(FLAGS, encoding="utf-8")
    fleet.ship(ENV, "1")
    fleet.json("flags", "set", ENV, "banner", "festive", "--region", "uk", "--reason", "x", "--yes")
    assert sorted(p.name for p in marks.iterdir()) == ["uk-web-1", "uk-web-2"]


def test_an_openfeature_app_in_file_mode_sees_each_change_without_restarting(shop: Any) -> None:
    import sys

    from flagreader import APP, FlagReader

    shop.json("flags", "set", ENV, "banner", "plain", "--region", "uk", "--reason", "first file", "--yes")
    path = shop.host_dir(ENV, "uk", "uk-web-2") / "shared" / "flags.json"
    app = FlagReader([sys.executable, str(APP), str(path)])
    try:
        app.ask("new-checkout=False banner=plain", 30, "the first flags")
        shop.json("flags", "set", ENV, "banner", "festive", "--region", "uk", "--reason", "winter", "--yes")
        app.ask("new-checkout=False banner=festive", 30, "banner festive")
        shop.json("flags", "rollout", ENV, "new-checkout", "--percent", "100", "--region", "uk", "--reason",
                  "launch", "--yes", expect=1)  # the uk canary's check fails: reverted there, uk-web-2 untouched
        app.ask("new-checkout=False banner=festive", 30, "still off")
        shop.json("rollback", ENV, "--flags", "--yes")
        app.ask("new-checkout=False banner=plain", 30, "the change reverted")
        assert app.process.poll() is None
        assert app.pid == app.process.pid
    finally:
        app.stop()


def test_plan_shows_the_flag_changes_a_deploy_carries_and_the_deploy_writes_them(shop: Any) -> None:
    plan = shop.json("plan", ENV)
    assert plan["flags"] == {}  # the first deploy carried the documents already
    assert served(shop, "za", "za-web-1", "banner") == "festive"
    (shop.root / "flags" / "flags.yaml").write_text(FLAGS + """\
  dark-mode:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
""", encoding="utf-8")
    plan = shop.json("plan", ENV)
    assert plan["flags"] == {region: [{"flag": "dark-mode", "from": None, "to": "off"}] for region in ("uk", "za")}
    assert "flag uk dark-mode: (new) → off" in shop.run("plan", ENV).stdout
    shop.ship(ENV, "2")
    assert served(shop, "uk", "uk-web-1", "dark-mode") == "off"
    assert shop.json("plan", ENV)["flags"] == {}


def test_an_inconclusive_bake_holds_a_flag_change_and_the_same_change_again_accepts_it(shop: Any) -> None:
    # Nothing listens on 127.0.0.1:9: the environment's check cannot be measured, so the bake cannot decide.
    shop.settings["environments"][ENV]["bake"] = "1s"
    shop.settings["environments"][ENV]["checks"] = [{"prometheus": "http://127.0.0.1:9", "query": "up",
                                                     "condition": "result > 0", "interval": "0.2s",
                                                     "timeout": "1s"}]
    shop.write_config()
    (shop.root / "flags" / "flags.yaml").write_text(FLAGS + """\
  dark-mode:
    state: ENABLED
    variants: {"on": true, "off": false}
    defaultVariant: "off"
""", encoding="utf-8")
    held = shop.json("flags", "set", ENV, "dark-mode", "on", "--reason", "evening", "--yes", expect=3)
    assert held["status"] == "held", held
    assert "the same flag change again accepts it" in held["regions"]["uk"]["message"]
    assert served(shop, "uk", "uk-web-1", "dark-mode") == "on"   # the wave that moved keeps it
    assert served(shop, "za", "za-web-1", "dark-mode") is None   # the next wave waits: its file lacks the flag
    again = shop.json("flags", "set", ENV, "dark-mode", "on", "--reason", "accepted", "--yes")
    assert again["status"] == "succeeded", again
    assert {h["status"] for h in again["regions"]["uk"]["hosts"]} == {"unchanged"}
    assert served(shop, "za", "za-web-1", "dark-mode") == "on"


# -- instances that start later (`conveyor converge`) --------------------------------------------------------------

def _converge(fleet: Any, root: Path, host: str) -> Any:
    import subprocess

    done = subprocess.run(fleet.command("converge", "--env", ENV, "--region", "za", "--role", "web", "--host", host,
                                        "--root", str(root), "--json"),
                          capture_output=True, text=True, env=fleet.env_vars(), cwd=fleet.root, timeout=60,
                          check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _pointer(fleet: Any) -> dict[str, Any]:
    path = fleet.root / ".conveyor" / "artifacts" / "pointers" / ENV / "za.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_a_new_instance_converges_with_the_flags_file_its_region_has_and_a_flag_change_moves_it(
        shop: Any, tmp_path: Path) -> None:
    region_file = (shop.host_dir(ENV, "za", "za-web-1") / "shared" / "flags.json").read_text()
    assert json.loads(region_file)["flags"]["banner"]["defaultVariant"] == "festive"  # za's override
    assert _pointer(shop)["flags"]["content"] == region_file
    first = tmp_path / "first"
    assert _converge(shop, first, "za-web-9")["status"] == "converged"
    assert (first / "srv" / "shop" / "shared" / "flags.json").read_text() == region_file

    # A flag change goes to the region's hosts, then to its pointer: the next instance starts with it.
    assert shop.json("flags", "set", ENV, "new-checkout", "on", "--region", "za", "--reason", "go",
                     "--yes")["status"] == "succeeded"
    changed = (shop.host_dir(ENV, "za", "za-web-1") / "shared" / "flags.json").read_text()
    assert changed != region_file
    assert _pointer(shop)["flags"]["content"] == changed
    second = tmp_path / "second"
    assert _converge(shop, second, "za-web-8")["status"] == "converged"
    assert (second / "srv" / "shop" / "shared" / "flags.json").read_text() == changed

    # A rollback moves the release and leaves the flags files as they are: the pointer keeps them too.
    before = _pointer(shop)["release"]
    shop.ship(ENV, "2")
    assert shop.json("rollback", ENV, "--yes")["release"] == before
    assert _pointer(shop)["release"] == before
    assert _pointer(shop)["flags"]["content"] == changed
