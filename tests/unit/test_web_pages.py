"""The dashboard's pages over a real SQLite state store, through Starlette's TestClient: what each page
shows, filters, the live view's server-sent events, and hostile names escaped everywhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("starlette")
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from conveyor.operations.workspace import Workspace
from conveyor.state import tables as t
from conveyor.state.store import Store
from conveyor.web.app import create_app, sse

CONFIG = """\
app: www
roles:
  web: {}
  batch: {}
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [web-1, web-2], batch: [batch-1]}}
  production:
    transport: local
    regions:
      uk: {hosts: {web: [uk-web-1]}}
      za: {hosts: {web: [za-web-1]}}
"""
HOSTILE = '<script>alert("x")</script>'
RELEASE = "20261201T100000Z-abcdef12"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    workspace = Workspace.load(tmp_path / "conveyor.yml")
    yield workspace
    workspace.close()


def add_user(store: Store, name: str, password: str) -> None:
    """A user with a cheap argon2id hash (parameters travel in the hash; the dashboard verifies with its own
    hasher): signing in costs milliseconds, not a second."""
    store.set_user(name, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password))


def signed_in(ws: Workspace, name: str = "viewer", *, poll: float = 1.0) -> TestClient:
    """A browser-like client (https, so the Secure cookie is kept) signed in as `name`."""
    add_user(ws.store, name, f"{name}-password")
    client = TestClient(create_app(ws, poll=poll), base_url="https://testserver")
    form = client.get("/login").text
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"csrf_token": token, "username": name, "password": f"{name}-password"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def deployed(store: Store, env: str, regions: list[str], release: str, user: str, status: str = "succeeded",
             hosts: list[tuple[str, str, str]] | None = None, output: str | None = None) -> int:
    """A finished deployment whose hosts (host, region, role) now run `release`."""
    key = store.start_deployment(environment=env, regions=regions, release=release,
                                 previous_by_region=dict.fromkeys(regions), kind="deploy", user=user)
    results = [{"host": h, "region": r, "role": role, "status": "ok" if status == "succeeded" else "failed",
                "release": release, "step": "switch", "exit_code": 0 if status == "succeeded" else 7,
                "output_tail": output} for h, r, role in hosts or []]
    store.record_host_results(key, results)
    store.set_host_releases(env, [(h, r, role, release) for h, r, role in hosts or []])
    for region in regions:
        store.set_pointer(env, region, release, key)
    store.finish_deployment(key, status, [])
    return key


def test_the_fleet_shows_each_region_and_role_with_its_release_commit_and_who(ws: Workspace) -> None:
    ws.store.record_release({"id": RELEASE, "sha256": "0" * 64, "size": 1, "user": "ada",
                             "created_at": "2026-12-01T10:00:00+00:00", "git": {"sha": "f00dfeed" * 5}})
    deployed(ws.store, "staging", ["uk"], RELEASE, "ada",
             hosts=[("web-1", "uk", "web"), ("web-2", "uk", "web"), ("batch-1", "uk", "batch")])
    ws.store.set_host_release("staging", "web-2", "uk", "web", "20261130T100000Z-00000000")  # drifted
    client = signed_in(ws)
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "<h2>staging</h2>" in html
    assert "<h2>production</h2>" in html
    assert "Nothing deployed to production yet." in html
    batch_row = html[html.index("<td>batch</td>"):]
    assert RELEASE in batch_row[:400]
    assert "f00dfeedf0" in batch_row[:400]
    assert "<td>ada</td>" in batch_row[:600]
    assert 'class="mixed">mixed</span>' in html
    assert ">20261130T100000Z-00000000</a> (1)" in html


def test_history_filters_by_environment_status_and_user(ws: Workspace) -> None:
    deployed(ws.store, "staging", ["uk"], RELEASE, "ada")
    deployed(ws.store, "production", ["uk"], RELEASE, "bob", status="failed")
    deployed(ws.store, "production", ["za"], RELEASE, "ada")
    client = signed_in(ws)

    def ids(**params: str) -> list[str]:
        html = client.get("/history", params=params).text
        return [part.split('"')[0] for part in html.split('href="/deployments/')[1:]]

    assert ids() == ["3", "2", "1"]
    assert ids(environment="production") == ["3", "2"]
    assert ids(status="failed") == ["2"]
    assert ids(user="ada") == ["3", "1"]
    assert ids(environment="production", user="ada") == ["3"]
    assert ids(environment="nowhere") == []
    assert ids(status="bogus") == []


def test_history_filters_by_region_and_by_days(ws: Workspace) -> None:
    first = deployed(ws.store, "production", ["uk"], RELEASE, "ada")
    second = deployed(ws.store, "production", ["uk", "za"], RELEASE, "bob")
    third = deployed(ws.store, "production", ["za"], RELEASE, "ada")
    with ws.store.engine.begin() as conn:  # when each started: 30 Nov, 1 Dec, 2 Dec
        for key, day in ((first, "2026-11-30"), (second, "2026-12-01"), (third, "2026-12-02")):
            conn.execute(sa.update(t.deployments).where(t.deployments.c.id == key).values(
                started_at=f"{day}T23:59:59+00:00"))
    client = signed_in(ws)

    def ids(**params: str) -> list[int]:
        html = client.get("/history", params=params).text
        return [int(part.split('"')[0]) for part in html.split('href="/deployments/')[1:]]

    assert ids(region="za") == [third, second]
    assert ids(region="uk") == [second, first]
    assert ids(region="u") == []  # a whole name, not a part of one
    assert ids(region='%"') == []
    assert ids(**{"from": "2026-12-01"}) == [third, second]
    assert ids(to="2026-12-01") == [second, first]
    assert ids(**{"from": "2026-12-01", "to": "2026-12-01"}, region="uk") == [second]
    bad = client.get("/history", params={"from": "yesterday<b>"})
    assert bad.status_code == 400
    assert "Dates are days like 2026-12-01." in bad.text
    assert "yesterday<b>" not in bad.text
    assert 'value="yesterday&lt;b&gt;"' in bad.text


def test_a_deployment_page_shows_hosts_steps_exit_codes_output_and_checks(ws: Workspace) -> None:
    key = deployed(ws.store, "production", ["uk"], RELEASE, "bob", status="failed",
                   hosts=[("web-1", "uk", "web")], output="health check said 503")
    ws.store.record_measurement(key, "verify", {"check": "http://127.0.0.1/health", "kind": "http",
                                                "scope": "web-1", "value": 503, "condition": "== 200",
                                                "verdict": "fail", "at": "2026-12-01T10:01:00+00:00"})
    client = signed_in(ws)
    html = client.get(f"/deployments/{key}").text
    assert 'data-host="web-1"' in html
    assert "<td>7</td>" in html
    assert "health check said 503" in html
    assert "http://127.0.0.1/health" in html
    assert "== 200" in html
    assert "sse-connect" not in html  # finished: nothing to follow
    missing = client.get("/deployments/999")
    assert missing.status_code == 404
    assert "no deployment #999" in missing.text


def test_hostile_names_and_output_are_escaped_on_every_page(ws: Workspace) -> None:
    key = deployed(ws.store, "production", ["uk"], RELEASE, HOSTILE, hosts=[(HOSTILE, "uk", "web")],
                   output=f"</pre>{HOSTILE}")
    client = signed_in(ws)
    for path in ("/", "/history", f"/history?user={HOSTILE}", f"/deployments/{key}", "/dora"):
        html = client.get(path).text
        assert HOSTILE not in html, path
        assert "<script>alert" not in html, path
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in client.get(f"/deployments/{key}").text


def test_dora_page_draws_a_bar_for_each_week_with_deployments(ws: Workspace) -> None:
    deployed(ws.store, "production", ["uk"], RELEASE, "ada")
    html = signed_in(ws).get("/dora?weeks=4").text
    assert "DORA, the last 4 weeks" in html
    assert html.count("<svg") == 8  # four charts per environment
    assert 'class="bar"' in html
    assert "1 deployments" in html
    assert signed_in(ws).get("/dora?weeks=lots").status_code == 200


def test_htmx_and_its_sse_extension_are_served_from_the_package(ws: Workspace) -> None:
    client = signed_in(ws)
    for name in ("htmx.min.js", "htmx-ext-sse.min.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert len(response.content) > 1000


def test_an_event_carries_every_line_of_its_html() -> None:
    assert sse("live", "<p>a</p>\n<p>b</p>") == "event: live\ndata: <p>a</p>\ndata: <p>b</p>\n\n"
    assert sse("done", "") == "event: done\ndata: \n\n"


def test_the_live_view_follows_a_running_deployment_until_it_ends(ws: Workspace) -> None:
    key = ws.store.start_deployment(environment="production", regions=["uk"], release=RELEASE,
                                    previous_by_region={"uk": None}, kind="deploy", user="ada")
    # Held as a deployment holds it (a running deployment no lock protects is reaped as interrupted).
    ws.store.lock("production", owner="ada", reason=None, deployment_id=key, lease=600, pid=os.getpid())
    client = signed_in(ws, poll=0.02)
    assert 'sse-connect="/deployments/1/events"' in client.get(f"/deployments/{key}").text
    with client.stream("GET", f"/deployments/{key}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = []
        for line in lines:
            if not line:
                break
            first.append(line)
        assert first[0] == "event: live"
        assert any("running" in line for line in first)
        # Another controller writes to the shared store: the stream says so, then ends.
        ws.store.record_host_results(key, [{"host": "web-9", "region": "uk", "role": "web", "status": "ok",
                                            "release": RELEASE, "step": "switch", "exit_code": 0}])
        ws.store.finish_deployment(key, "succeeded", [])
        rest = list(lines)
    text = "\n".join(rest)
    assert 'data-host="web-9"' in text
    assert "succeeded" in text
    assert "event: done" in text  # and the stream ended: list() returned

