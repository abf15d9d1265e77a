"""Gates for people, through the real `conveyor` CLI on local fleets: windows, break-glass, promotion,
approvals and the auto-deploy policy (issue 6).

Every refusal is checked four ways: the exit code, the one sentence on stderr (and the same sentence as
`{"error", "exit_code"}` on stdout with `--json`), what history says, and that no file, link or restart on
any host changed (a snapshot of every local host's tree, taken before and compared after).

The product's clock cannot be moved from outside (a deploy judges windows by the real time). These tests
fix the clock of the `conveyor` processes they start with a test-only `sitecustomize` (tests/clockshim) on
PYTHONPATH: at one moment for a whole run, or read from a file each time a window is evaluated, which the
restart of the wave-1 hosts rewrites in the one test that needs the window to close *during* a deployment.
Everything else in those runs is the product as shipped.
"""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clockshim import clock_env

pytestmark = pytest.mark.integration

RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
MakeFleet = Callable[[dict[str, Any]], Any]  # the `make_fleet` fixture (conftest.py)

# Europe/London office hours with month-end payment runs denied (the design's example).
OFFICE_HOURS = {
    "timezone": "Europe/London",
    "allow": [{"days": "mon-thu", "hours": "09:00-16:00"}, {"days": "fri", "hours": "09:00-12:00"}],
    "deny": [{"month_days": "28-31,1-2", "reason": "month-end payment runs"}],
}
INSIDE = "2026-03-10T10:00:00Z"      # a Tuesday, 10:00 in London (GMT)
OUTSIDE = "2026-03-10T18:00:00Z"     # the same Tuesday, 18:00: no allow rule matches
OPENS_AFTER_OUTSIDE = "2026-03-11T09:00:00+00:00"
MONTH_END = "2026-11-30T10:00:00Z"   # a Monday at 10:00 (an allow rule matches) but the 30th: denied
OPENS_AFTER_MONTH_END = "2026-12-03T09:00:00+00:00"  # 1 and 2 December are denied too

HELD_BY_WINDOW = ("production is held: window office-hours is closed: no allow rule matches; opens "
                  f"{OPENS_AFTER_OUTSIDE} (--break-glass --reason TEXT overrides it)")

# Each host's "service": its restart records what it serves and appends to a log of every restart, both in
# `deploy_to`, so a restart that should not have happened shows in the host snapshot.
SERVE = ('printf "%s %s\\n" "$CONVEYOR_RELEASE" "$CONVEYOR_KIND" > "$CONVEYOR_DEPLOY_TO/serving"; '
         'echo "$CONVEYOR_RELEASE $CONVEYOR_KIND" >> "$CONVEYOR_DEPLOY_TO/restarts"')

def settings(production: dict[str, Any] | None = None, staging: dict[str, Any] | None = None,
             web_restart: str = SERVE) -> dict[str, Any]:
    """A conveyor.yml: staging (one host) and production (waves [[a], [b]], office hours)."""
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "shared": ["log"],
        "roles": {"web": {"restart": web_restart, "canary": 1, "batch": 1}},
        "environments": {
            "staging": {"transport": "local", **(staging or {}),
                        "regions": {"s": {"hosts": {"web": ["stg-web-1"]}}}},
            "production": {"transport": "local", "window": "office-hours", "waves": [["a"], ["b"]],
                           **(production or {}),
                           "regions": {"a": {"hosts": {"web": ["a-web-1", "a-web-2"]}},
                                       "b": {"hosts": {"web": ["b-web-1"]}}}},
        },
        "windows": {"office-hours": OFFICE_HOURS},
    }


def cli(fleet: Any, *args: str, now: str | None = INSIDE, expect: int | None = 0, user: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `conveyor -c CFG ARGS...` with the clock at `now` (None: the real clock); check the exit code."""
    environ = fleet.env_vars(user)
    environ.update(clock_env(now))
    environ.update(env or {})
    done = subprocess.run(fleet.command(*args), capture_output=True, text=True, env=environ, cwd=fleet.root,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
    shown = (f"conveyor {' '.join(args)} -> exit {done.returncode}\n--- stdout ---\n{done.stdout}"
             f"\n--- stderr ---\n{done.stderr}")
    assert "Traceback" not in done.stdout + done.stderr, shown
    if expect is not None:
        assert done.returncode == expect, shown
    return done


def document(done: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document on stdout."""
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"stdout is not one JSON document:\n{done.stdout}\n{done.stderr}") from None


def refused(fleet: Any, *args: str, code: int = 3, now: str | None = INSIDE, user: str | None = None) -> str:
    """Run a command that must be refused with `--json`: the one sentence it gives, checked on both streams."""
    done = cli(fleet, *args, "--json", now=now, expect=code, user=user)
    error = document(done)
    assert error == {"error": error["error"], "exit_code": code}, error
    sentence = error["error"]
    assert "\n" not in sentence, sentence
    assert done.stderr == f"conveyor: {sentence}\n", done.stderr
    return str(sentence)


def build(fleet: Any, version: str) -> str:
    """Build release `version` (its files in the artifact directory): its id."""
    fleet.write_artifact(version)
    release = document(cli(fleet, "build", "--json"))["id"]
    assert RELEASE_ID.match(release), release
    fleet.versions[release] = version
    return str(release)


def deploy(fleet: Any, env: str, release: str, *args: str, now: str | None = INSIDE, user: str | None = None,
           extra_env: dict[str, str] | None = None, expect: int = 0) -> Any:
    """`conveyor deploy ENV --release R --yes --json ARGS`: the result document."""
    done = cli(fleet, "deploy", env, "--release", release, "--yes", "--json", *args, now=now, user=user,
               env=extra_env, expect=expect)
    return document(done)


def history(fleet: Any, env: str | None = None) -> list[dict[str, Any]]:
    """`conveyor history --json`: deployments, newest first."""
    return list(document(cli(fleet, "history", *([env] if env else []), "--json"))["deployments"])


def approvals(fleet: Any) -> dict[int, dict[str, Any]]:
    """`conveyor approvals --json`: id -> request."""
    items = document(cli(fleet, "approvals", "--json"))["approvals"]
    return {item["id"]: item for item in items}


def stored_approval(fleet: Any, number: int) -> dict[str, Any]:
    """One approval request as the state store holds it (cheaper than a `conveyor approvals` run)."""
    with sqlite3.connect(fleet.root / ".conveyor" / "state.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM approvals WHERE id = ?", (number,)).fetchone()
    assert row is not None, f"no approval #{number} in the store"
    return dict(row)


def events(fleet: Any, kind: str) -> list[dict[str, Any]]:
    """The audit trail's events of one kind, oldest first, read straight from the SQLite state store."""
    with sqlite3.connect(fleet.root / ".conveyor" / "state.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM events WHERE kind = ? ORDER BY id", (kind,)).fetchall()
    return [{**dict(row), "data": json.loads(row["data"])} for row in rows]


def hosts_tree(fleet: Any) -> dict[str, tuple[str, ...]]:
    """Every path under the local hosts: links with their targets, files with their mode and bytes."""
    root = fleet.root / ".conveyor" / "hosts"
    tree: dict[str, tuple[str, ...]] = {}
    for path in sorted(root.rglob("*")) if root.exists() else []:
        name = str(path.relative_to(root))
        if path.is_symlink():
            tree[name] = ("link", str(path.readlink()))
        elif path.is_file():
            tree[name] = ("file", oct(path.stat().st_mode), path.read_bytes().hex())
        else:
            tree[name] = ("dir", oct(path.stat().st_mode))
    return tree


def currents(fleet: Any, env: str = "production") -> dict[str, str | None]:
    """host -> the release `current` points at."""
    return {host: fleet.current(env, region, host) for region, _role, host in fleet.hosts(env)}


def restarts(fleet: Any, region: str, host: str, env: str = "production") -> list[str]:
    """The restarts a host's service saw, oldest first."""
    log = fleet.host_dir(env, region, host) / "restarts"
    return log.read_text().splitlines() if log.exists() else []


# -- 1 windows ----------------------------------------------------------------------------------------------
def test_a_deploy_goes_inside_the_window_and_is_refused_outside_it_saying_when_it_opens(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings())
    r1 = build(fleet, "1")
    assert deploy(fleet, "production", r1, now=INSIDE)["status"] == "succeeded"
    assert currents(fleet) == dict.fromkeys(["a-web-1", "a-web-2", "b-web-1"], r1)

    r2 = build(fleet, "2")
    before = hosts_tree(fleet)
    assert refused(fleet, "deploy", "production", "--release", r2, "--yes", now=OUTSIDE) == HELD_BY_WINDOW
    # Deny beats allow: Monday 10:00 is office hours, but the 30th is a month-end payment day.
    assert refused(fleet, "deploy", "production", "--release", r2, "--yes", now=MONTH_END) == (
        "production is held: window office-hours is closed: deny month_days 28-31,1-2 (month-end payment "
        f"runs); opens {OPENS_AFTER_MONTH_END} (--break-glass --reason TEXT overrides it)")
    assert hosts_tree(fleet) == before

    newest, second, first = history(fleet, "production")
    assert (first["release"], first["status"], first["overrides"]) == (r1, "succeeded", [])
    for blocked in (newest, second):
        assert (blocked["release"], blocked["status"], blocked["user"]) == (r2, "blocked", "alice")
        assert blocked["overrides"] == []


def test_windows_json_names_the_deciding_rule_and_the_next_change_with_offsets(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings())
    contract = {"environment", "window", "open", "rule", "next_open", "next_close"}

    month_end = document(cli(fleet, "windows", "production", "--json", "--at", "2026-11-30T10:00:00+00:00",
                             now=None))
    assert set(month_end) >= contract
    assert {k: month_end[k] for k in contract} == {
        "environment": "production", "window": "office-hours", "open": False,
        "rule": "deny month_days 28-31,1-2 (month-end payment runs)",
        "next_open": OPENS_AFTER_MONTH_END, "next_close": None}
    assert month_end["reason"] == "month-end payment runs"

    # Summer time: the offsets are London's (+01:00), and the next close is today at 16:00 local.
    summer = document(cli(fleet, "windows", "production", "--json", "--at", "2026-06-10T09:30:00Z", now=None))
    assert {k: summer[k] for k in contract} == {
        "environment": "production", "window": "office-hours", "open": True, "rule": "allow mon-thu 09:00-16:00",
        "next_open": None, "next_close": "2026-06-10T16:00:00+01:00"}

    # Without --at the injected clock decides; across the spring-forward night the next open is in BST.
    # 29 March is denied (month end) and so are 1-2 April; Friday 3 April opens at 09:00 BST.
    spring = document(cli(fleet, "windows", "production", "--json", now="2026-03-29T01:30:00Z"))
    assert {k: spring[k] for k in contract} == {
        "environment": "production", "window": "office-hours", "open": False,
        "rule": "deny month_days 28-31,1-2 (month-end payment runs)",
        "next_open": "2026-04-03T09:00:00+01:00", "next_close": None}
    for value in (month_end["next_open"], summer["next_close"], spring["next_open"]):
        assert datetime.fromisoformat(value).utcoffset() is not None

    # Every environment: one document, each entry the same shape (staging has no window: always open).
    every = document(cli(fleet, "windows", "--json", now=OUTSIDE))
    assert set(every) == {"windows"}
    by_env = {w["environment"]: w for w in every["windows"]}
    assert set(by_env) == {"staging", "production"}
    assert set(by_env["staging"]) == set(by_env["production"])
    assert {k: by_env["staging"][k] for k in contract} == {
        "environment": "staging", "window": None, "open": True, "rule": "no window configured",
        "next_open": None, "next_close": None}
    assert (by_env["production"]["open"], by_env["production"]["next_open"]) == (False, OPENS_AFTER_OUTSIDE)


# -- 2 break-glass ------------------------------------------------------------------------------------------
def test_break_glass_needs_a_reason_and_is_recorded_with_the_user_and_the_reason(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings())
    r1 = build(fleet, "1")
    deploy(fleet, "production", r1)
    r2 = build(fleet, "2")
    before = hosts_tree(fleet)

    assert refused(fleet, "deploy", "production", "--release", r2, "--yes", "--break-glass", code=2,
                   now=OUTSIDE) == "--break-glass needs --reason TEXT: it is audited"
    assert hosts_tree(fleet) == before
    assert events(fleet, "break_glass") == []

    reason = "INC-42: card payments failing, hotfix"
    result = deploy(fleet, "production", r2, "--break-glass", "--reason", reason, now=OUTSIDE, user="carol")
    assert result["status"] == "succeeded"
    # Both waves went: the closed window is not checked again between waves of a break-glass deploy.
    assert currents(fleet) == dict.fromkeys(["a-web-1", "a-web-2", "b-web-1"], r2)

    newest = history(fleet, "production")[0]
    assert (newest["id"], newest["release"], newest["status"]) == (result["id"], r2, "succeeded")
    assert (newest["user"], newest["overrides"], newest["reason"]) == ("carol", ["break_glass"], reason)

    (event,) = events(fleet, "break_glass")
    assert (event["user"], event["environment"], event["app"]) == ("carol", "production", "shop")
    assert event["data"]["reason"] == reason
    assert event["data"]["release"] == r2
    assert event["data"]["gate"].startswith("window office-hours is closed: no allow rule matches")
    assert datetime.fromisoformat(event["at"]).tzinfo is not None


# -- 3 promotion --------------------------------------------------------------------------------------------
def test_promotion_refuses_what_staging_has_not_run_unless_skipped_with_a_reason(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings(production={"promote_from": "staging"}))
    r1 = build(fleet, "1")

    assert refused(fleet, "deploy", "production", "--release", r1, "--yes") == (
        f"production refuses {r1}: {r1} has not succeeded in staging yet (promote_from; --skip-promotion "
        "--reason TEXT overrides it)")
    assert refused(fleet, "deploy", "production", "--release", r1, "--yes", "--skip-promotion",
                   code=2) == "--skip-promotion needs --reason TEXT: it is audited"
    assert hosts_tree(fleet) == {}  # no host was even created
    assert [(d["release"], d["status"]) for d in history(fleet)] == [(r1, "blocked")]

    reason = "staging is down; this release is a config-only change"
    skipped = deploy(fleet, "production", r1, "--skip-promotion", "--reason", reason, user="dave")
    assert skipped["status"] == "succeeded"
    assert currents(fleet) == dict.fromkeys(["a-web-1", "a-web-2", "b-web-1"], r1)
    (event,) = events(fleet, "skip_promotion")
    assert (event["user"], event["environment"], event["data"]["reason"]) == ("dave", "production", reason)
    assert event["data"]["release"] == r1

    # The ordinary path: once staging ran it, production takes it without any override.
    deploy(fleet, "staging", r1)
    promoted = deploy(fleet, "production", r1)
    newest, older = history(fleet, "production")[:2]
    assert (newest["id"], newest["overrides"]) == (promoted["id"], [])
    assert (older["id"], older["overrides"], older["user"]) == (skipped["id"], ["skip_promotion"], "dave")
    assert events(fleet, "skip_promotion") == [event]


# -- 4 approvals --------------------------------------------------------------------------------------------
def request_id(sentence: str, env: str, release: str) -> int:
    """The request id in the sentence a deploy to an `approval: required` environment gives."""
    match = re.fullmatch(rf"{env} needs approval: request #(\d+) recorded for {release}; another person runs "
                         rf"`conveyor approve (\d+)`, then `conveyor deploy {env} --request (\d+)`", sentence)
    assert match is not None, sentence
    assert len(set(match.groups())) == 1, sentence
    return int(match.group(1))


def test_an_approval_by_another_person_lets_the_requester_deploy_once(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings(production={"approval": "required"}))
    r1 = build(fleet, "1")

    number = request_id(refused(fleet, "deploy", "production", "--release", r1, "--yes"), "production", r1)
    assert hosts_tree(fleet) == {}
    (blocked,) = history(fleet)
    assert (blocked["status"], blocked["release"], blocked["user"]) == ("blocked", r1, "alice")
    request = approvals(fleet)[number]
    assert (request["environment"], request["release"], request["regions"]) == ("production", r1, ["a", "b"])
    assert (request["requested_by"], request["approved_by"], request["used_by"]) == ("alice", None, None)
    assert datetime.fromisoformat(request["expires_at"]) > datetime.now(UTC) + timedelta(hours=23)

    assert refused(fleet, "approve", str(number)) == (
        f"alice requested #{number} and cannot approve it: another person must")
    assert refused(fleet, "deploy", "production", "--request", str(number), "--yes") == (
        f"approval #{number} has not been approved yet (`conveyor approve {number}` by someone other than alice)")
    assert stored_approval(fleet, number)["approved_by"] is None

    approved = document(cli(fleet, "approve", str(number), "--json", user="bob"))
    assert (approved["id"], approved["approved_by"], approved["requested_by"]) == (number, "bob", "alice")

    # The request is for r1: it cannot carry another release, nor go to another environment.
    r2 = build(fleet, "2")
    assert refused(fleet, "deploy", "production", "--request", str(number), "--release", r2, "--yes",
                   code=2) == f"approval #{number} is for {r1}, not {r2}"
    assert refused(fleet, "deploy", "staging", "--request", str(number), "--yes",
                   code=2) == f"approval #{number} is for production, not staging"
    assert hosts_tree(fleet) == {}
    assert stored_approval(fleet, number)["used_by"] is None

    result = document(cli(fleet, "deploy", "production", "--request", str(number), "--yes", "--json"))
    assert (result["status"], result["release"]) == ("succeeded", r1)
    assert currents(fleet) == dict.fromkeys(["a-web-1", "a-web-2", "b-web-1"], r1)
    newest = history(fleet, "production")[0]
    assert (newest["id"], newest["approval_id"], newest["user"]) == (result["id"], number, "alice")
    assert stored_approval(fleet, number)["used_by"] == result["id"]

    before = hosts_tree(fleet)
    assert refused(fleet, "deploy", "production", "--request", str(number), "--yes") == (
        f"approval #{number} was already used by deployment #{result['id']}")
    assert hosts_tree(fleet) == before
    assert [e["data"]["approval_id"] for e in events(fleet, "approved")] == [number]
    assert [e["user"] for e in events(fleet, "approved")] == ["bob"]


def test_a_denied_request_holds_the_deploy_that_names_it_with_the_reason(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings(production={"approval": "required"}))
    r1 = build(fleet, "1")
    number = request_id(refused(fleet, "deploy", "production", "--release", r1, "--yes"), "production", r1)
    assert refused(fleet, "deny", str(number), "--reason", "mine") == (
        f"alice requested #{number} and cannot deny it: another person must")
    assert refused(fleet, "deny", str(number), "--reason", " ", user="bob", code=2) == (
        "say why the request is denied (a reason)")
    denied = document(cli(fleet, "deny", str(number), "--reason", "not during the <b>freeze</b>", "--json",
                          user="bob"))
    assert (denied["denied_by"], denied["denial"], denied["approved_by"]) == ("bob", "not during the <b>freeze</b>",
                                                                             None)
    assert refused(fleet, "deploy", "production", "--request", str(number), "--yes") == (
        f"approval #{number} was denied by bob: not during the <b>freeze</b>; request a new one")
    assert refused(fleet, "approve", str(number), user="carol", code=2) == f"#{number} was already denied by bob"
    assert hosts_tree(fleet) == {}
    assert stored_approval(fleet, number)["used_by"] is None
    assert [(e["user"], e["data"]["approval_id"], e["data"]["reason"]) for e in events(fleet, "denied")] == [
        ("bob", number, "not during the <b>freeze</b>")]
    assert approvals(fleet)[number]["denied_by"] == "bob"


def test_an_expired_request_can_be_neither_approved_nor_used(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings(production={"approval": "required", "approval_expires": "0s"}))
    r1 = build(fleet, "1")
    stale = request_id(refused(fleet, "deploy", "production", "--release", r1, "--yes"), "production", r1)
    expires_at = approvals(fleet)[stale]["expires_at"]
    assert datetime.fromisoformat(expires_at) <= datetime.now(UTC)
    assert refused(fleet, "approve", str(stale), user="bob") == (
        f"#{stale} expired at {expires_at}; request a new one")
    assert refused(fleet, "deploy", "production", "--request", str(stale), "--yes") == (
        f"approval #{stale} expired at {expires_at}; request a new one")
    assert stored_approval(fleet, stale)["approved_by"] is None

    # Approved in time, used too late: the request's expiry is moved an hour back in the store (time
    # passing, without waiting for it).
    fleet.settings["environments"]["production"]["approval_expires"] = "1h"
    fleet.write_config()
    late = request_id(refused(fleet, "deploy", "production", "--release", r1, "--yes"), "production", r1)
    cli(fleet, "approve", str(late), user="bob")
    past = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
    with sqlite3.connect(fleet.root / ".conveyor" / "state.db") as db:
        db.execute("UPDATE approvals SET expires_at = ? WHERE id = ?", (past, late))
    assert refused(fleet, "deploy", "production", "--request", str(late), "--yes") == (
        f"approval #{late} expired at {past}; request a new one")
    assert hosts_tree(fleet) == {}
    assert stored_approval(fleet, late)["used_by"] is None


def test_an_approval_for_some_regions_does_not_deploy_others(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings(production={"approval": "required"}))
    r1 = build(fleet, "1")
    number = request_id(refused(fleet, "deploy", "production", "--release", r1, "--region", "a", "--yes"),
                        "production", r1)
    assert approvals(fleet)[number]["regions"] == ["a"]
    cli(fleet, "approve", str(number), user="bob")

    assert refused(fleet, "deploy", "production", "--request", str(number), "--region", "b", "--yes") == (
        f"approval #{number} covers a, not b; request a new one for those regions")
    assert hosts_tree(fleet) == {}
    assert stored_approval(fleet, number)["used_by"] is None

    document(cli(fleet, "deploy", "production", "--request", str(number), "--yes", "--json"))
    assert currents(fleet) == {"a-web-1": r1, "a-web-2": r1, "b-web-1": None}


# -- 5 auto -------------------------------------------------------------------------------------------------
def test_deploy_auto_goes_only_where_the_environment_says_auto_true(make_fleet: MakeFleet) -> None:
    fleet = make_fleet(settings(staging={"auto": True}))
    r1 = build(fleet, "1")
    assert deploy(fleet, "staging", r1, "--auto", user="ci")["status"] == "succeeded"
    assert fleet.current("staging", "s", "stg-web-1") == r1
    before = hosts_tree(fleet)

    assert refused(fleet, "deploy", "production", "--release", r1, "--yes", "--auto", user="ci") == (
        "production is not deployed automatically (auto: false): a person deploys it, so `deploy --auto` "
        "is refused")
    assert hosts_tree(fleet) == before
    newest, first = history(fleet)
    assert (newest["environment"], newest["status"], newest["user"]) == ("production", "blocked", "ci")
    assert (first["environment"], first["status"]) == ("staging", "succeeded")
    # A person deploys production as ever.
    assert deploy(fleet, "production", r1)["status"] == "succeeded"


# -- 6 a window that closes between waves -------------------------------------------------------------------
def test_a_window_closing_during_wave_one_holds_wave_two_until_resumed_inside_the_window(
        make_fleet: MakeFleet, tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    closes = "2026-03-10T16:30:00Z"  # Tuesday 16:30 in London: after office hours
    # Wave 1 (region a) restarts: the clock moves past 16:00 while the deployment runs.
    restart = f'{SERVE}; if [ "$CONVEYOR_REGION" = a ]; then printf %s {closes} > {shlex.quote(str(clock))}; fi'
    fleet = make_fleet(settings(web_restart=restart))
    shimmed = clock_env(clock_file=clock)

    r1 = build(fleet, "1")
    deploy(fleet, "production", r1)  # the clock fixed inside the window for the whole run: both waves
    r2 = build(fleet, "2")
    clock.write_text(INSIDE, encoding="utf-8")

    held = deploy(fleet, "production", r2, now=None, extra_env=shimmed, expect=3)
    reason = ("window office-hours closed before wave 2 (no allow rule matches); it opens "
              f"{OPENS_AFTER_OUTSIDE}; `deploy --resume` then")
    assert clock.read_text() == closes
    assert held["status"] == "held"
    assert held["message"] == f"b: {reason}"
    assert {r: (o["status"], o["message"]) for r, o in held["regions"].items()} == {
        "a": ("succeeded", None), "b": ("held", reason)}
    assert currents(fleet) == {"a-web-1": r2, "a-web-2": r2, "b-web-1": r1}  # never inside a region
    assert restarts(fleet, "b", "b-web-1") == [f"{r1} deploy"]

    # Still closed: resuming is refused and changes nothing.
    before = hosts_tree(fleet)
    assert refused(fleet, "deploy", "production", "--resume", str(held["id"]), "--yes",
                   now=OUTSIDE) == HELD_BY_WINDOW
    assert hosts_tree(fleet) == before

    # The next morning: resume carries the same release on to wave 2; wave 1 is not touched again.
    resumed = document(cli(fleet, "deploy", "production", "--resume", str(held["id"]), "--yes", "--json",
                           now="2026-03-11T09:05:00Z"))
    assert (resumed["status"], resumed["release"]) == ("succeeded", r2)
    assert currents(fleet) == dict.fromkeys(["a-web-1", "a-web-2", "b-web-1"], r2)
    assert restarts(fleet, "a", "a-web-1") == [f"{r1} deploy", f"{r2} deploy"]
    assert restarts(fleet, "b", "b-web-1") == [f"{r1} deploy", f"{r2} deploy"]
    statuses = [(d["id"], d["status"]) for d in history(fleet, "production")]
    assert statuses[0] == (resumed["id"], "succeeded")
    assert (held["id"], "held") in statuses
