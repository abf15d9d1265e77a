"""Notifications and Grafana annotations, end to end: the real `conveyor` CLI deploys a local fleet while a
real SMTP server (aiosmtpd) and a recording HTTP server (standing in for Slack-format webhooks, generic JSON
webhooks and Grafana's API) receive what it sends through Apprise and urllib.

What these prove: each target gets exactly the events it asked for, with what a person needs (release,
regions, outcome, failing hosts, commits, authors, the pipeline job); Grafana gets one annotation per region,
opened and closed, with a Bearer token; a target that is down or answers 500 leaves the deployment green and
is reported once on stderr and in the state store; no secret from a URL or a token shows anywhere.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from httprecorder import Recorded, Recorder, recording_server
from smtpinbox import smtp_server

pytestmark = pytest.mark.integration

MakeFleet = Callable[[dict[str, Any]], Any]

CHAT_TOKEN = "chat7token8never9shown"
MAIL_PASSWORD = "mail-pa55-never-shown"
HOOK_PASSWORD = "hook-pa55-never-shown"
GRAFANA_TOKEN = "glsa_grafana_token_never_shown"
SECRETS = (CHAT_TOKEN, MAIL_PASSWORD, HOOK_PASSWORD, GRAFANA_TOKEN)
JOB = "https://gitlab.example.com/payments/shop/-/jobs/4242"

SERVE = 'printf "%s\\n" "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'


def fails_on(host: str, version: str) -> str:
    """A restart that fails on `host` when the release it starts is `version`."""
    return (f'if [ "$CONVEYOR_HOST" = {host} ] && [ "$(cat VERSION)" = {version} ]; then '
            f'echo "{host} refuses version {version}"; exit 7; fi; {SERVE}')


def settings(*, restart: str = SERVE, **extra: Any) -> dict[str, Any]:
    """staging then production, each with regions za and uk of two local web hosts."""

    def environment(prefix: str, **more: Any) -> dict[str, Any]:
        hosts = {r: {"hosts": {"web": [f"{prefix}-{r}-web-1", f"{prefix}-{r}-web-2"]}} for r in ("za", "uk")}
        return {"transport": "local", **more, "regions": hosts}

    return {
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop", "shared": ["log"], **extra,
        "roles": {"web": {"restart": restart, "canary": 1, "batch": 1}},
        "environments": {"staging": environment("stg"), "production": environment("prd", promote_from="staging")},
    }


def commit(fleet: Any, subject: str, name: str = "Alice Example", email: str = "alice@example.com") -> str:
    """Commit everything in the fleet's directory (a git repository from the first commit on): the sha."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(fleet.root), "-c", f"user.name={name}", "-c", f"user.email={email}",
                               "-c", "commit.gpgsign=false", *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    if not (fleet.root / ".git").exists():
        git("init", "-q")
        (fleet.root / ".gitignore").write_text(".conveyor/\n", encoding="utf-8")
    git("add", "-A")  # a clean work tree: the config is committed with the app, the state is ignored
    git("commit", "-q", "--allow-empty", "-m", subject)
    return git("rev-parse", "HEAD")


def build(fleet: Any, version: str, subject: str, **author: str) -> tuple[str, str]:
    """Write version `version`, commit it and `conveyor build` it: (release id, commit sha)."""
    fleet.write_artifact(version)
    sha = commit(fleet, subject, **author)
    release = fleet.json("build")["id"]
    fleet.versions[release] = version
    return release, sha


def posted(web: Recorder, path: str) -> list[dict[str, Any]]:
    """The JSON bodies POSTed under `path`, oldest first."""
    return [r.json() for r in web.received("POST", path)]


def state_events(fleet: Any, kind: str | None = None) -> list[dict[str, Any]]:
    """The state store's audit trail (of one kind), oldest first."""
    with sqlite3.connect(fleet.root / ".conveyor" / "state.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM events ORDER BY id").fetchall()
    found = [{**dict(row), "data": json.loads(row["data"])} for row in rows]
    return [e for e in found if kind is None or e["kind"] == kind]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into:\n{text}"


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("conveyor: warning: notify")]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- every kind of target --------------------------------------------------------------------------------------


def test_each_target_gets_the_events_it_asked_for_by_webhook_chat_and_email(
        make_fleet: MakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_TOKEN", CHAT_TOKEN)
    monkeypatch.setenv("MAIL_PASSWORD", MAIL_PASSWORD)
    monkeypatch.setenv("GRAFANA_TOKEN", GRAFANA_TOKEN)
    monkeypatch.setenv("CI_JOB_URL", JOB)
    with recording_server() as web, smtp_server("deploybot", MAIL_PASSWORD) as inbox:
        mail = (f"mailto://deploybot:${{MAIL_PASSWORD}}@127.0.0.1:{inbox.port}?smtp=127.0.0.1&mode=insecure"
                "&from=deploybot@example.com&to=ops@example.com")
        fleet = make_fleet(settings(
            notify=[
                f"json://127.0.0.1:{web.port}/hooks/everything",
                # Mattermost's incoming webhooks take Slack's format: {"text": ...} POSTed to /hooks/<token>.
                {"url": f"mmost://127.0.0.1:{web.port}/${{CHAT_TOKEN}}", "events": ["succeeded", "failed"]},
                {"url": mail, "events": ["succeeded"], "name": "ops mail"},
                {"url": f"json://127.0.0.1:{web.port}/hooks/incidents", "events": ["failed", "rolled_back"]},
                {"url": f"json://127.0.0.1:{web.port}/hooks/production", "environments": ["production"]},
            ],
            grafana={"url": web.url, "token_env": "GRAFANA_TOKEN", "dashboard_uid": "deploys"},
        ))
        release, sha = build(fleet, "1", "Round card totals to the cent")
        done = fleet.run("deploy", "staging", "--release", release, "--yes", "--json")
        assert done.json()["status"] == "succeeded"
        # The deployment waits for its messages before it exits: everything has arrived by now.
        started, succeeded = posted(web, "/hooks/everything")
        (chat,) = web.received("POST", f"/hooks/{CHAT_TOKEN}")
        (letter,) = inbox.wait_for(1)

    where = "staging (za, uk) by alice"
    assert started["title"] == f"🚀 shop {release} deploying to {where}"
    assert started["message"] == f"Release: {release} (first deploy)\nPipeline: {JOB}"
    assert started["type"] == "info"
    assert succeeded["title"] == f"✅ shop {release} deployed to {where}"
    assert succeeded["type"] == "success"
    lines = succeeded["message"].splitlines()
    assert lines[:2] == ["Regions: za succeeded; uk succeeded", f"Release: {release} (first deploy)"]
    assert lines[2].startswith("Duration: ")
    assert lines[3:] == ["Commits:", f"  {sha[:8]} Alice Example: Round card totals to the cent", f"Pipeline: {JOB}"]

    # The Slack-format webhook: one message, the title and the body in Slack's `text`.
    assert chat.headers["content-type"].startswith("application/json")
    text = chat.json()["text"]
    assert f"✅ shop {release} deployed to {where}" in text
    assert f"{sha[:8]} Alice Example: Round card totals to the cent" in text

    # The email went through a real SMTP server, logged in with the password from the environment.
    assert inbox.logins == ["deploybot"]
    assert (letter.sender, letter.recipients) == ("deploybot@example.com", ["ops@example.com"])
    assert letter.subject == f"✅ shop {release} deployed to {where}"
    assert "Regions: za succeeded; uk succeeded" in letter.text
    assert JOB in letter.text

    # Targets that asked for other events, or another environment, heard nothing.
    assert web.received(path_prefix="/hooks/incidents") == []
    assert web.received(path_prefix="/hooks/production") == []

    # Grafana: one annotation per region, opened (POST) then closed (PATCH), with the token as Bearer.
    opened = web.received("POST", "/api/annotations")
    closed = web.received("PATCH", "/api/annotations/")
    assert len(opened) == len(closed) == 2
    for request in opened + closed:
        assert request.headers["authorization"] == f"Bearer {GRAFANA_TOKEN}"
        assert request.headers["content-type"] == "application/json"
    regions = {}
    for number, request in enumerate(opened, start=1):
        body = request.json()
        region = next(t for t in body["tags"] if t.startswith("region:")).removeprefix("region:")
        assert body["tags"] == ["conveyor", "app:shop", "environment:staging", f"region:{region}",
                                f"release:{release}", "kind:deploy"]
        assert body["dashboardUID"] == "deploys"
        assert body["text"] == f"shop: deploy {release} to staging/{region} by alice"
        regions[f"/api/annotations/{number}"] = (region, body["time"])
    assert sorted(region for region, _ in regions.values()) == ["uk", "za"]
    for request in closed:
        region, began = regions[request.path]
        body = request.json()
        assert body["timeEnd"] >= began
        assert body["tags"][-1] == "outcome:succeeded"
        assert f"region:{region}" in body["tags"]
        assert body["text"] == f"shop: deploy {release} to staging/{region} by alice: succeeded"

    assert warnings(done.stderr) == []
    history = fleet.run("history", "--json").stdout
    assert_no_secret(done.stdout, done.stderr, history, json.dumps(state_events(fleet)))


# -- failures, who is told, and what they are told -------------------------------------------------------------


def test_a_rolled_back_region_is_reported_with_its_failing_host_and_closes_its_annotation_so(
        make_fleet: MakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", GRAFANA_TOKEN)
    with recording_server() as web:
        fleet = make_fleet(settings(
            restart=fails_on("stg-uk-web-1", "2"),
            notify=[{"url": f"json://127.0.0.1:{web.port}/incidents", "events": ["failed", "rolled_back"]},
                    {"url": f"json://127.0.0.1:{web.port}/good-news", "events": ["succeeded"]}],
            grafana={"url": web.url, "token_env": "GRAFANA_TOKEN"},
        ))
        first, _ = build(fleet, "1", "First")
        fleet.deploy("staging", first)
        assert [m["title"] for m in posted(web, "/good-news")] == [
            f"✅ shop {first} deployed to staging (za, uk) by alice"]
        assert posted(web, "/incidents") == []

        second, _ = build(fleet, "2", "Second")
        result = fleet.deploy("staging", second, expect=1)
        assert result["status"] == "rolled_back"
        (incident,) = posted(web, "/incidents")
        assert len(posted(web, "/good-news")) == 1
        closed = {r.path: r.json() for r in web.received("PATCH", "/api/annotations/")}
        opened = web.received("POST", "/api/annotations")

    assert incident["title"] == f"↩️ shop {second} rolled back in staging (za, uk) by alice"
    assert incident["type"] == "failure"
    body = incident["message"]
    assert "Regions: za succeeded; uk rolled back (" in body
    assert f"Release: {second} (previous: {first})" in body
    failed = body.split("Failed hosts:\n", 1)[1].splitlines()[0]
    assert failed.startswith("  stg-uk-web-1 (uk, ")
    assert "stg-uk-web-1 refuses version 2" in failed

    # The second deployment's annotations (ids 3 and 4) end with each region's own outcome.
    outcomes = {}
    for number, request in enumerate(opened, start=1):
        if number > 2:
            region = next(t for t in request.json()["tags"] if t.startswith("region:"))
            outcomes[region] = closed[f"/api/annotations/{number}"]["tags"][-1]
    assert outcomes == {"region:za": "outcome:succeeded", "region:uk": "outcome:rolled_back"}


def test_a_target_that_is_down_or_answers_500_leaves_the_deployment_green_and_is_reported_once(
        make_fleet: MakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_PASSWORD", HOOK_PASSWORD)
    monkeypatch.setenv("GRAFANA_TOKEN", GRAFANA_TOKEN)
    down = closed_port()
    with recording_server() as web, recording_server() as grafana:
        web.fail("/broken", 500)
        grafana.fail("/api/annotations", 500)
        fleet = make_fleet(settings(
            notify=[f"json://127.0.0.1:{down}/hooks/down",
                    f"json://deploybot:${{HOOK_PASSWORD}}@127.0.0.1:{web.port}/broken",
                    f"json://127.0.0.1:{web.port}/fine"],
            grafana={"url": grafana.url, "token_env": "GRAFANA_TOKEN"},
        ))
        release, _ = build(fleet, "1", "First")
        done = fleet.run("deploy", "staging", "--release", release, "--yes", "--json")
        broken = web.received("POST", "/broken")
        fine = posted(web, "/fine")
        annotations = grafana.received("POST", "/api/annotations")

    assert done.code == 0
    assert done.json()["status"] == "succeeded"
    # Each target heard both events (started, succeeded); each failing one is reported once, by its masked URL.
    assert [m["title"].split(" ")[0] for m in fine] == ["🚀", "✅"]
    assert len(broken) == 2
    assert len(annotations) == 2
    reported = warnings(done.stderr)
    assert len(reported) == 3, done.stderr
    down_line = next(line for line in reported if f"127.0.0.1:{down}" in line)
    broken_line = next(line for line in reported if "deploybot" in line)
    grafana_line = next(line for line in reported if "notify grafana" in line)
    assert down_line.startswith(f"conveyor: warning: notify json://127.0.0.1:{down}/…: ")
    assert broken_line.startswith(f"conveyor: warning: notify json://deploybot:…@127.0.0.1:{web.port}/…: ")
    assert "500" in broken_line
    assert grafana_line.startswith(f"conveyor: warning: notify grafana http://127.0.0.1:{grafana.port}: "
                                   "annotation for ")
    assert grafana_line.endswith(" not added: POST /api/annotations: HTTP 500 Internal Server Error: "
                                 '{"message": "recorder says no"}')

    events = state_events(fleet, "notify_failed")
    assert len(events) == 3
    assert {e["data"]["target"] for e in events} == {
        f"json://127.0.0.1:{down}/…", f"json://deploybot:…@127.0.0.1:{web.port}/…",
        f"grafana http://127.0.0.1:{grafana.port}"}
    assert all(e["data"]["error"] and e["environment"] == "staging" and e["deployment_id"] == done.json()["id"]
               for e in events)
    (newest,) = fleet.json("history")["deployments"]
    assert newest["status"] == "succeeded"
    history = fleet.run("history", "--json").stdout
    assert_no_secret(done.stdout, done.stderr, history, json.dumps(state_events(fleet)))


def test_production_names_the_authors_whose_change_is_live_and_a_lock_is_told_as_blocked(
        make_fleet: MakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI_JOB_URL", raising=False)  # no pipeline line: the authors line is the last
    with recording_server() as web:
        fleet = make_fleet(settings(notify=[f"json://127.0.0.1:{web.port}/deploys"],
                                    authors={"alice@example.com": "@alice", "bob@example.com": "@bob"}))
        release, _ = build(fleet, "1", "Refunds in one click", name="Bob Builder", email="Bob@Example.com")
        fleet.deploy("staging", release)
        fleet.deploy("production", release)
        fleet.run("lock", "production", "--reason", "month-end payment runs", user="carol")
        refused = fleet.run("deploy", "production", "--release", release, "--yes", expect=3)
        messages = posted(web, "/deploys")

    titles = [m["title"] for m in messages]
    assert titles == [
        f"🚀 shop {release} deploying to staging (za, uk) by alice",
        f"✅ shop {release} deployed to staging (za, uk) by alice",
        f"🚀 shop {release} deploying to production (za, uk) by alice",
        f"✅ shop {release} deployed to production (za, uk) by alice",
        f"⛔ shop {release} blocked from production (za, uk) by alice",
    ]
    assert "Live now" not in messages[1]["message"]
    assert messages[3]["message"].splitlines()[-1] == "Live now for @bob"
    assert "month-end payment runs" in messages[4]["message"]
    assert messages[4]["type"] == "warning"
    assert warnings(refused.stderr) == []


# -- configuration mistakes --------------------------------------------------------------------------------------


def test_an_unset_variable_in_a_notify_url_stops_the_deploy_before_anything_moves(
        make_fleet: MakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_TOKEN", raising=False)
    fleet = make_fleet(settings(notify=[{"url": "mmost://chat.example.com/${CHAT_TOKEN}"}]))
    fleet.write_artifact("1")
    done = fleet.run("deploy", "staging", "--yes", expect=2)
    assert "notify.0.url: environment variable CHAT_TOKEN is not set" in done.stderr
    assert not (fleet.root / ".conveyor" / "hosts").exists()


def test_a_missing_grafana_token_is_reported_and_the_deployment_goes_on(
        make_fleet: MakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    with recording_server() as grafana:
        fleet = make_fleet(settings(grafana={"url": grafana.url, "token_env": "GRAFANA_TOKEN"}))
        release, _ = build(fleet, "1", "First")
        done = fleet.run("deploy", "staging", "--release", release, "--yes", "--json")
        received: list[Recorded] = grafana.received()
    assert done.json()["status"] == "succeeded"
    assert warnings(done.stderr) == [f"conveyor: warning: notify grafana http://127.0.0.1:{grafana.port}: "
                                     "GRAFANA_TOKEN is not set: no annotations for this deployment"]
    assert received == []


def test_a_target_that_never_answers_costs_the_deployment_its_timeout_and_no_more(
        make_fleet: MakeFleet) -> None:
    # A port that accepts connections (the kernel's backlog does) and never says a word.
    with socket.socket() as silent, recording_server() as web:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        fleet = make_fleet(settings(notify=[{"url": f"json://127.0.0.1:{port}/hooks", "timeout": "1s"},
                                            f"json://127.0.0.1:{web.port}/fine"]))
        release, _ = build(fleet, "1", "First")
        began = time.monotonic()
        done = fleet.run("deploy", "staging", "--release", release, "--yes", "--json")
        took = time.monotonic() - began
        fine = posted(web, "/fine")

    assert done.json()["status"] == "succeeded"
    assert [m["title"].split(" ")[0] for m in fine] == ["🚀", "✅"]
    (reported,) = warnings(done.stderr)
    assert reported.startswith(f"conveyor: warning: notify json://127.0.0.1:{port}/…: ")
    # Two messages of at most 1s each, the first while hosts moved: far below what waiting would cost.
    assert took < 20, f"the deployment took {took:.1f}s"


def test_a_message_lists_every_commit_that_went_out_and_names_all_their_authors(
        make_fleet: MakeFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI_JOB_URL", raising=False)
    with recording_server() as web:
        fleet = make_fleet(settings(notify=[{"url": f"json://127.0.0.1:{web.port}/deploys", "events": ["succeeded"],
                                             "environments": ["production"]}],
                                    authors={"alice@example.com": "@alice", "bob@example.com": "@bob"}))
        first, _ = build(fleet, "1", "First cut")
        fleet.deploy("staging", first)
        fleet.deploy("production", first)
        fleet.write_artifact("2")
        commit(fleet, "Refunds in one click", name="Bob Builder", email="bob@example.com")
        second, _ = build(fleet, "3", "Faster checkout", name="Alice Example", email="alice@example.com")
        fleet.deploy("staging", second)
        fleet.deploy("production", second)
        messages = posted(web, "/deploys")

    assert len(messages) == 2
    body = messages[1]["message"]
    assert "Faster checkout" in body
    assert "Refunds in one click" in body   # not only the head commit: everything since what production ran
    assert "First cut" not in body          # that one was already live
    assert body.splitlines()[-1] == "Live now for @alice, @bob"
