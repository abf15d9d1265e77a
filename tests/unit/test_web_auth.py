"""The dashboard's sign-in, sessions, CSRF, the trusted proxy header, public read-only, and approving as a
second person: Starlette's TestClient over a real SQLite state store."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from conveyor.cli.app import main
from conveyor.operations.gating import REASON_LIMIT
from conveyor.operations.users import authenticate
from conveyor.operations.workspace import Workspace
from conveyor.secrets import register_secret
from conveyor.state.store import Store
from conveyor.web.app import create_app
from conveyor.web.auth import safe_next

CONFIG = """\
app: www
roles:
  web: {}
environments:
  production:
    transport: local
    regions:
      uk: {hosts: {web: [web-1]}}
"""


def add_user(store: Store, name: str, password: str) -> None:
    """A user whose argon2id hash is cheap to check (parameters travel in the hash: the dashboard verifies it
    with its own hasher); `conveyor user add`'s full-cost hash is tested once, below."""
    store.set_user(name, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password))


def workspace(tmp_path: Path, web: str = "") -> Workspace:
    (tmp_path / "conveyor.yml").write_text(CONFIG + web)
    return Workspace.load(tmp_path / "conveyor.yml")


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    workspace_ = workspace(tmp_path)
    add_user(workspace_.store, "ada", "ada-password")
    add_user(workspace_.store, "bob", "bob-password")
    yield workspace_
    workspace_.close()


def browser(ws: Workspace, **kwargs: object) -> TestClient:
    return TestClient(create_app(ws), base_url="https://testserver", follow_redirects=False, **kwargs)  # type: ignore[arg-type]


def token(client: TestClient, path: str = "/login") -> str:
    return client.get(path).text.split('name="csrf_token" value="')[1].split('"')[0]


def sign_in(client: TestClient, name: str) -> None:
    response = client.post("/login", data={"csrf_token": token(client), "username": name,
                                           "password": f"{name}-password", "next": "/history"})
    assert response.status_code == 303
    assert response.headers["location"] == "/history"


def test_every_page_refuses_an_anonymous_reader(ws: Workspace) -> None:
    client = browser(ws)
    for path in ("/", "/history", "/dora", "/approvals", "/deployments/1"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={path}"
    events = client.get("/deployments/1/events", headers={"accept": "text/event-stream"})
    assert events.status_code == 401
    assert client.get("/static/htmx.min.js").status_code == 200  # published code, no secret


def test_signing_in_sets_a_secure_httponly_samesite_cookie(ws: Workspace) -> None:
    client = browser(ws)
    response = client.post("/login", data={"csrf_token": token(client), "username": "ada",
                                           "password": "ada-password"})
    cookie = response.headers["set-cookie"].lower()
    assert "conveyor_session=" in cookie
    assert "secure" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert '<span id="signed-in">ada</span>' in page.text


def test_a_wrong_password_or_unknown_user_is_refused_alike(ws: Workspace) -> None:
    client = browser(ws)
    for name, password in (("ada", "not-her-password"), ("nobody", "ada-password"), ("<b>", "x")):
        response = client.post("/login", data={"csrf_token": token(client), "username": name,
                                               "password": password})
        assert response.status_code == 401
        assert "Unknown user or wrong password." in response.text
        assert client.get("/").status_code == 303
    assert authenticate(ws.store, "ada", "ada-password")
    assert not authenticate(ws.store, "ada", "")


def test_a_post_without_this_sessions_csrf_token_is_refused(ws: Workspace) -> None:
    client = browser(ws)
    client.get("/login")
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post("/login", data={**data, "username": "ada", "password": "ada-password"})
        assert response.status_code == 403
        assert "CSRF" in response.text
    assert client.get("/").status_code == 303
    # Another session's token is no good either.
    other = browser(ws)
    response = client.post("/login", data={"csrf_token": token(other), "username": "ada",
                                           "password": "ada-password"})
    assert response.status_code == 403


def test_signing_out_needs_the_token_and_ends_the_session(ws: Workspace) -> None:
    client = browser(ws)
    sign_in(client, "ada")
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token(client, "/")}).status_code == 303
    assert client.get("/").status_code == 303


def test_the_session_key_lives_in_the_store_so_a_second_dashboard_accepts_the_cookie(ws: Workspace) -> None:
    first = browser(ws)
    sign_in(first, "ada")
    second = browser(ws, cookies=dict(first.cookies))
    assert second.get("/").status_code == 200
    assert ws.store.session_key() == ws.store.session_key()
    assert len(ws.store.session_key()) == 64


def test_a_user_removed_from_the_store_is_signed_out(ws: Workspace) -> None:
    import sqlalchemy as sa

    from conveyor.state import tables as t

    client = browser(ws)
    sign_in(client, "bob")
    with ws.store.engine.begin() as conn:
        conn.execute(sa.delete(t.users).where(t.users.c.name == "bob"))
    assert client.get("/").status_code == 303


def test_user_remove_ends_that_users_sessions_even_if_the_name_comes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    monkeypatch.setenv("CONVEYOR_USER", "root-admin")
    ws = workspace(tmp_path)
    add_user(ws.store, "dee", "dee-password")
    add_user(ws.store, "eve", "eve-password")
    config = str(tmp_path / "conveyor.yml")
    dee, eve = browser(ws), browser(ws)
    sign_in(dee, "dee")
    sign_in(eve, "eve")

    def user(*args: str) -> int:
        with pytest.raises(SystemExit) as done:
            main(["-c", config, "user", *args])
        return int(done.value.code or 0)

    assert user("remove", "dee") == 0
    assert "removed user dee" in capsys.readouterr().out
    assert dee.get("/").status_code == 303
    assert eve.get("/").status_code == 200
    assert ws.store.user_names() == ["eve"]
    event = ws.store.events(1)[0]
    assert (event["kind"], event["user"], event["data"]) == ("user_removed", "root-admin", {"name": "dee"})
    add_user(ws.store, "dee", "dee-password")  # the name again, even with the same password
    assert dee.get("/").status_code == 303
    assert user("remove", "nobody") == 2
    assert "no dashboard user 'nobody'" in capsys.readouterr().err
    # A new password ends the old sessions too.
    add_user(ws.store, "eve", "another-password")
    assert eve.get("/").status_code == 303
    ws.close()


def test_after_signing_in_only_a_path_on_this_site_is_followed() -> None:
    assert safe_next("/deployments/4") == "/deployments/4"
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example", None, ""):
        assert safe_next(hostile) == "/"


def test_public_dashboards_are_read_by_anyone_but_approving_needs_a_user(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    ws = workspace(tmp_path, "web: {public: true}\n")
    request = ws.store.request_approval("production", "20261201T100000Z-abcdef12", ["uk"], "ada", 3600, None)
    client = browser(ws)
    assert client.get("/").status_code == 200
    assert "Approve</button>" not in client.get("/approvals").text
    response = client.post(f"/approvals/{request}/approve", data={"csrf_token": token(client)})
    assert response.status_code == 401
    assert ws.store.approval(request)["approved_by"] is None  # type: ignore[index]
    ws.close()


def test_approving_needs_a_second_person_and_the_csrf_token(ws: Workspace) -> None:
    request = ws.store.request_approval("production", "20261201T100000Z-abcdef12", ["uk"], "ada", 3600, "hotfix")
    requester = browser(ws)
    sign_in(requester, "ada")
    page = requester.get("/approvals").text
    assert "another person must approve" in page
    own = requester.post(f"/approvals/{request}/approve", data={"csrf_token": token(requester, "/approvals")})
    assert own.status_code == 403
    assert "cannot approve it" in own.text
    approver = browser(ws)
    sign_in(approver, "bob")
    assert approver.post(f"/approvals/{request}/approve", data={}).status_code == 403  # no token
    assert ws.store.approval(request)["approved_by"] is None  # type: ignore[index]
    done = approver.post(f"/approvals/{request}/approve", data={"csrf_token": token(approver, "/approvals")})
    assert done.status_code == 200
    assert f"Approved #{request}" in done.text
    assert ws.store.approval(request)["approved_by"] == "bob"  # type: ignore[index]
    assert ws.store.events(5)[0]["kind"] == "approved"
    again = approver.post(f"/approvals/{request}/approve", data={"csrf_token": token(approver, "/approvals")})
    assert again.status_code == 409
    assert "already approved by bob" in again.text


def test_denying_takes_a_second_person_a_reason_and_the_csrf_token(ws: Workspace) -> None:
    request = ws.store.request_approval("production", "20261201T100000Z-abcdef12", ["uk"], "ada", 3600, "hotfix")
    requester = browser(ws)
    sign_in(requester, "ada")
    assert "Deny</button>" not in requester.get("/approvals").text
    own = requester.post(f"/approvals/{request}/deny", data={"csrf_token": token(requester, "/approvals"),
                                                              "reason": "changed my mind"})
    assert own.status_code == 403
    assert "cannot deny it" in own.text
    denier = browser(ws)
    sign_in(denier, "bob")
    assert "Deny</button>" in denier.get("/approvals").text
    forged = denier.post(f"/approvals/{request}/deny", data={"csrf_token": "forged", "reason": "no"})
    assert forged.status_code == 403
    for reason, shown in (("   ", "say why"), ("x" * (REASON_LIMIT + 1), f"at most {REASON_LIMIT}")):
        bad = denier.post(f"/approvals/{request}/deny", data={"csrf_token": token(denier, "/approvals"),
                                                             "reason": reason})
        assert bad.status_code == 400
        assert shown in bad.text
    huge = denier.post(f"/approvals/{request}/deny", data={"csrf_token": token(denier, "/approvals"),
                                                          "reason": "x" * 100_000})
    assert huge.status_code == 413
    assert ws.store.approval(request)["denied_by"] is None  # type: ignore[index]

    hostile = '<script>alert("no")</script>'
    done = denier.post(f"/approvals/{request}/deny", data={"csrf_token": token(denier, "/approvals"),
                                                          "reason": f"not now {hostile}"})
    assert done.status_code == 200
    assert f"Denied #{request}" in done.text
    assert hostile not in done.text
    assert "&lt;script&gt;" in done.text
    record = ws.store.approval(request)
    assert record is not None
    assert (record["denied_by"], record["denial"], record["approved_by"]) == ("bob", f"not now {hostile}", None)
    event = ws.store.events(1)[0]
    assert (event["kind"], event["user"], event["data"]["reason"]) == ("denied", "bob", f"not now {hostile}")
    assert "Approve</button>" not in done.text  # decided: no buttons
    again = denier.post(f"/approvals/{request}/approve", data={"csrf_token": token(denier, "/approvals")})
    assert again.status_code == 409
    assert "already denied by bob" in again.text


def test_a_secret_in_a_denial_is_masked(ws: Workspace) -> None:
    register_secret("hunter2-token")
    request = ws.store.request_approval("production", "20261201T100000Z-abcdef12", ["uk"], "ada", 3600, None)
    denier = browser(ws)
    sign_in(denier, "bob")
    done = denier.post(f"/approvals/{request}/deny", data={"csrf_token": token(denier, "/approvals"),
                                                          "reason": "leaked hunter2-token in the log"})
    assert done.status_code == 200
    assert "hunter2-token" not in done.text
    assert "hunter2-token" not in str(ws.store.approval(request))
    assert "hunter2-token" not in str(ws.store.events(1))


@pytest.mark.parametrize(("proxy", "trusted"), [("127.0.0.1", True), ("10.0.0.9", True), ("10.0.1.9", False)])
def test_a_trusted_header_is_believed_only_from_a_configured_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   proxy: str, trusted: bool) -> None:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    ws = workspace(tmp_path, "web:\n  trusted_header: X-Forwarded-User\n  trusted_proxies: [127.0.0.1, 10.0.0.0/24]\n")
    client = browser(ws, client=(proxy, 40000))
    response = client.get("/", headers={"X-Forwarded-User": "carol"})
    assert response.status_code == (200 if trusted else 303)
    if trusted:
        assert '<span id="signed-in">carol</span>' in response.text
    ws.close()


def test_trusted_proxies_must_be_addresses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conveyor.yml").write_text(CONFIG + "web: {trusted_header: X-User, trusted_proxies: [proxy.lan]}\n")
    with pytest.raises(SystemExit) as done:
        main(["-c", str(tmp_path / "conveyor.yml"), "validate"])
    assert done.value.code == 2
    assert "web.trusted_proxies" in capsys.readouterr().err


def test_user_add_reads_the_password_from_stdin_and_stores_an_argon2_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    config = str(tmp_path / "conveyor.yml")

    def user_add(name: str, stdin: str, *extra: str) -> int:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as done:
            main(["-c", config, "user", "add", name, *extra])
        return int(done.value.code or 0)

    assert user_add("dee", "correct horse battery\n") == 0
    assert "added user dee" in capsys.readouterr().out
    ws = Workspace.load(config)
    assert (ws.store.password_hash("dee") or "").startswith("$argon2id$")
    assert "correct horse" not in (ws.store.password_hash("dee") or "")
    assert authenticate(ws.store, "dee", "correct horse battery")
    assert user_add("dee", "another long one\n") == 0
    assert "new password for user dee" in capsys.readouterr().out
    assert authenticate(ws.store, "dee", "another long one")
    assert user_add("eve", "short\n") == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert user_add("<eve>", "long enough password\n") == 2
    assert user_add("eve", "", "--password") == 2  # there is no such option: never on the command line
    assert ws.store.user_names() == ["dee"]
    ws.close()
