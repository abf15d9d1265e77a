"""Failed sign-ins are limited per user name and per client address, in bounded memory, with a clear 429; a
forwarded address counts only from a trusted proxy. The clock is the limiter's own argument: no waiting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from conveyor.operations.workspace import Workspace
from conveyor.web.app import create_app
from conveyor.web.limits import Failures, SignInLimits

CONFIG = """\
app: www
roles:
  web: {}
environments:
  production:
    transport: local
    regions:
      uk: {hosts: {web: [web-1]}}
web:
  trusted_proxies: [10.0.0.0/24]
"""


class Clock:
    """Seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    workspace = Workspace.load(tmp_path / "conveyor.yml")
    for name in ("ada", "bob", "cy"):
        workspace.store.set_user(name, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(
            f"{name}-password"))
    yield workspace
    workspace.close()


def sign_in(client: TestClient, name: str, password: str, **headers: str) -> int:
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"csrf_token": token, "username": name, "password": password},
                           headers=headers)
    if response.status_code == 429:
        assert "Too many failed sign-ins for this user or from this address: try again in" in response.text
        assert int(response.headers["retry-after"]) > 0
    return response.status_code


def test_a_name_is_refused_after_its_failures_until_they_age(ws: Workspace) -> None:
    clock = Clock()
    client = TestClient(create_app(ws, limits=SignInLimits(per_user=3, per_address=10, period=60, clock=clock)),
                        base_url="https://testserver", follow_redirects=False)
    assert [sign_in(client, "ada", "guess") for _ in range(3)] == [401, 401, 401]
    assert sign_in(client, "ada", "ada-password") == 429  # the right password, not even checked
    assert sign_in(client, "bob", "bob-password") == 303  # another name from the same address
    clock.now += 59
    assert sign_in(client, "ada", "ada-password") == 429
    clock.now += 1
    assert sign_in(client, "ada", "ada-password") == 303
    assert sign_in(client, "ada", "guess") == 401  # a success cleared her failures: one counted again
    assert sign_in(client, "ada", "ada-password") == 303


def test_an_address_is_refused_after_its_failures_whatever_names_it_tries(ws: Workspace) -> None:
    clock = Clock()
    limits = SignInLimits(per_user=10, per_address=4, period=60, clock=clock)
    client = TestClient(create_app(ws, limits=limits), base_url="https://testserver", client=("192.0.2.7", 5000),
                        follow_redirects=False)
    assert [sign_in(client, name, "guess") for name in ("a1", "a2", "a3", "a4")] == [401] * 4
    assert sign_in(client, "cy", "cy-password") == 429
    other = TestClient(create_app(ws, limits=limits), base_url="https://testserver", client=("192.0.2.8", 5000),
                       follow_redirects=False)
    assert sign_in(other, "cy", "cy-password") == 303
    # A forwarded address from an untrusted peer is not believed: it cannot dodge the limit.
    assert sign_in(client, "cy", "cy-password", **{"X-Forwarded-For": "198.51.100.1"}) == 429


def test_behind_a_trusted_proxy_each_forwarded_address_counts_apart(ws: Workspace) -> None:
    limits = SignInLimits(per_user=10, per_address=2, period=60, clock=Clock())
    proxy = TestClient(create_app(ws, limits=limits), base_url="https://testserver", client=("10.0.0.5", 5000),
                       follow_redirects=False)
    mallory = {"X-Forwarded-For": "203.0.113.9, 198.51.100.66"}  # the proxy saw 198.51.100.66
    assert [sign_in(proxy, "x", "guess", **mallory) for _ in range(2)] == [401, 401]
    assert sign_in(proxy, "cy", "cy-password", **mallory) == 429
    assert sign_in(proxy, "cy", "cy-password", **{"X-Forwarded-For": "198.51.100.67"}) == 303


def test_the_tables_forget_the_least_recently_seen_beyond_their_size() -> None:
    clock = Clock()
    failures = Failures(limit=3, period=60, keys=100, clock=clock)
    for number in range(10_000):
        failures.failed(f"name-{number}")
    assert len(failures.seen) == 100
    assert all(len(times) <= 3 for times in failures.seen.values())
    for _ in range(50):
        failures.failed("name-9999")
    assert len(failures.seen["name-9999"]) == 3
    assert failures.wait("name-9999") == pytest.approx(60)
    assert failures.wait("name-0") is None
