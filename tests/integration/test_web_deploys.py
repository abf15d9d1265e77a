"""`web.deploys: true`: the release page's Deploy button runs the real `conveyor deploy` as the signed-in user,
behind the same gates, audited; absent (404, no button) unless configured. A local fleet, the dashboard over
Starlette's TestClient, and the CLI it starts as a child process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from conveyor.operations.workspace import Workspace
from conveyor.web.app import create_app

pytestmark = pytest.mark.integration

CLOSED = {"timezone": "UTC", "allow": [{"dates": "2000-01-01"}]}  # a window that never opens again


def settings(deploys: bool) -> dict[str, Any]:
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": "true"}},
        "environments": {
            "staging": {"transport": "local", "regions": {"s": {"hosts": {"web": ["stg-web-1"]}}}},
            "production": {"transport": "local", "window": "never",
                           "regions": {"a": {"hosts": {"web": ["a-web-1"]}}}},
        },
        "windows": {"never": CLOSED},
        "web": {"deploys": deploys},
    }


def dashboard(fleet: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Workspace, TestClient, str]:
    """The fleet's dashboard with ada signed in, and a release built."""
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_CONFIG", raising=False)
    fleet.write_artifact("1")
    release = str(fleet.json("build")["id"])
    ws = Workspace.load(fleet.cfg)
    ws.store.set_user("ada", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("ada-password"))
    client = TestClient(create_app(ws), base_url="https://testserver", follow_redirects=False)
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/login", data={"csrf_token": token, "username": "ada",
                                       "password": "ada-password"}).status_code == 303
    return ws, client, release


def csrf(client: TestClient, path: str) -> str:
    return client.get(path).text.split('name="csrf_token" value="')[1].split('"')[0]


@pytest.fixture
def enabled(make_fleet: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Workspace, TestClient, str]]:
    ws, client, release = dashboard(make_fleet(settings(True)), monkeypatch)
    yield ws, client, release
    ws.close()


def test_the_deploy_button_runs_conveyor_deploy_as_the_signed_in_user(
        enabled: tuple[Workspace, TestClient, str]) -> None:
    ws, client, release = enabled
    page = client.get(f"/releases/{release}").text
    assert 'id="deploy"' in page
    token = csrf(client, f"/releases/{release}")
    assert client.post(f"/releases/{release}/deploy", data={"csrf_token": token, "environment": "staging"}
                       ).status_code == 400  # the box not ticked
    assert client.post(f"/releases/{release}/deploy", data={"environment": "staging", "confirm": "yes"}
                       ).status_code == 403  # no CSRF token
    assert ws.store.history(None, 5) == []

    started = client.post(f"/releases/{release}/deploy",
                          data={"csrf_token": token, "environment": "staging", "confirm": "yes"})
    assert started.status_code == 303
    assert started.headers["location"].startswith("/deployments/")
    key = int(started.headers["location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 120
    while (record := ws.store.deployment(key)) is not None and record["status"] == "running":
        assert time.monotonic() < deadline, "the deployment did not finish within 120 s"
        time.sleep(0.1)  # the deployment runs in another process: its row is the condition
    assert record is not None
    assert (record["status"], record["user"], record["release"], record["environment"]) == (
        "succeeded", "ada", release, "staging")
    assert [h["release"] for h in ws.store.host_states("staging")] == [release]
    audit = [e for e in ws.store.events(20) if e["kind"] == "web_deploy"]
    assert [(e["user"], e["environment"], e["data"]["release"]) for e in audit] == [("ada", "staging", release)]


def test_a_deploy_from_the_page_is_held_by_the_same_gates(enabled: tuple[Workspace, TestClient, str]) -> None:
    ws, client, release = enabled
    held = client.post(f"/releases/{release}/deploy", data={
        "csrf_token": csrf(client, f"/releases/{release}"), "environment": "production", "confirm": "yes"})
    assert held.status_code == 409
    assert "conveyor deploy production: production is held: window never is closed" in held.text
    (blocked,) = ws.store.history("production", 5)
    assert (blocked["status"], blocked["user"]) == ("blocked", "ada")
    assert [h["release"] for h in ws.store.host_states("production")] in ([], [None])


def test_without_web_deploys_there_is_no_button_and_no_route(make_fleet: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ws, client, release = dashboard(make_fleet(settings(False)), monkeypatch)
    try:
        page = client.get(f"/releases/{release}").text
        assert 'id="deploy"' not in page
        token = csrf(client, f"/releases/{release}")
        refused = client.post(f"/releases/{release}/deploy",
                              data={"csrf_token": token, "environment": "staging", "confirm": "yes"})
        assert refused.status_code == 404
        assert ws.store.history(None, 5) == []
    finally:
        ws.close()
