"""The dashboard as a person uses it, in Debian's chromium: signing in, the fleet, a deployment run by
another controller updating on its page without a reload, approving as a second person, a forged form
refused, and an anonymous visitor sent to sign in. One real `conveyor serve` (uvicorn) for the module."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

pytest.importorskip("playwright")
from argon2 import PasswordHasher
from playwright.sync_api import Browser, Page, expect

from conveyor.state.store import Store

CONFIG = """\
app: www
roles:
  web: {}
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [stg-web-1]}}
  production:
    transport: local
    window: office-hours
    regions:
      uk: {hosts: {web: [web-1, web-2]}}
windows:
  office-hours:
    timezone: Europe/London
    allow: [{days: mon-fri, hours: "09:00-17:00"}]
    deny: [{dates: "2026-12-24..2026-12-26", reason: "Christmas"}]
"""
RELEASE = "20261201T100000Z-abcdef12"
NEXT = "20261202T100000Z-12345678"


@dataclass(frozen=True)
class Dashboard:
    url: str
    store: Store
    running: int  # a deployment another controller is running (it holds the lock)
    request: int  # ada's deploy request, for someone else to approve


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    root = tmp_path_factory.mktemp("dashboard")
    (root / "conveyor.yml").write_text(CONFIG)
    (root / ".conveyor").mkdir()
    store = Store(f"sqlite:///{root / '.conveyor' / 'state.db'}", "www")
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # argon2id; parameters in the hash
    for name in ("ada", "bob"):
        store.set_user(name, cheap.hash(f"{name}-password"))
    done = store.start_deployment(environment="production", regions=["uk"], release=RELEASE,
                                  previous_by_region={"uk": None}, kind="deploy", user="ada")
    store.record_host_results(done, [{"host": h, "region": "uk", "role": "web", "status": "ok", "release": RELEASE,
                                      "step": "switch", "exit_code": 0} for h in ("web-1", "web-2")])
    store.set_host_releases("production", [(h, "uk", "web", RELEASE) for h in ("web-1", "web-2")])
    store.set_pointer("production", "uk", RELEASE, done)
    store.finish_deployment(done, "succeeded", [])
    running = store.start_deployment(environment="production", regions=["uk"], release=NEXT,
                                     previous_by_region={"uk": RELEASE}, kind="deploy", user="bob")
    store.lock("production", owner="bob", reason=None, deployment_id=running, lease=3600, pid=os.getpid())
    request = store.request_approval("production", NEXT, ["uk"], "ada", 3600, "the payments fix")
    port = _port()
    env = {**os.environ, "CONVEYOR_STATE_URL": ""}
    log = root / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen([sys.executable, "-c", "from conveyor.cli.app import main; main()", "-c",
                                   str(root / "conveyor.yml"), "serve", "--port", str(port)], env=env,
                                  stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "conveyor serve did not listen within 60 s"
            time.sleep(0.05)  # polling the port: the condition is the server listening
        yield Dashboard(f"http://127.0.0.1:{port}", store, running, request)
    finally:
        server.terminate()
        server.wait(timeout=30)
        store.close()


def sign_in(page: Page, dashboard: Dashboard, name: str, path: str = "/") -> None:
    page.goto(dashboard.url + path)
    expect(page).to_have_url(f"{dashboard.url}/login?next={path}")
    page.get_by_label("User").fill(name)
    page.get_by_label("Password").fill(f"{name}-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signed-in")).to_have_text(name)


def test_signing_in_lands_on_the_fleet_page(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "ada")
    expect(page.get_by_role("heading", name="What runs where")).to_be_visible()
    row = page.locator('table[data-environment="production"] tr', has_text="web")
    expect(row).to_contain_text(RELEASE)
    expect(row).to_contain_text("ada")
    expect(page.get_by_text("Nothing deployed to staging yet.")).to_be_visible()


def test_a_wrong_password_stays_on_the_sign_in_page(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/login")
    page.get_by_label("User").fill("ada")
    page.get_by_label("Password").fill("guess")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown user or wrong password.")
    page.goto(dashboard.url + "/history")
    expect(page).to_have_url(f"{dashboard.url}/login?next=/history")


def test_a_running_deployment_updates_on_its_page_without_a_reload(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "ada", f"/deployments/{dashboard.running}")
    expect(page.locator("#deployment-status")).to_have_text("running")
    page.evaluate("window.sameDocument = true")
    # The controller running it (here: this test, writing to the shared store) reports a host, then ends.
    dashboard.store.record_host_results(dashboard.running, [
        {"host": "web-1", "region": "uk", "role": "web", "status": "ok", "release": NEXT, "step": "switch",
         "exit_code": 0, "output_tail": "reloaded www"}])
    expect(page.locator('tr[data-host="web-1"]')).to_contain_text("reloaded www")
    dashboard.store.finish_deployment(dashboard.running, "succeeded", [])
    expect(page.locator("#deployment-status")).to_have_text("succeeded")
    assert page.evaluate("window.sameDocument") is True  # the page was never reloaded


def test_approving_takes_a_second_person(browser: Browser, dashboard: Dashboard) -> None:
    requester = browser.new_page()
    sign_in(requester, dashboard, "ada", "/approvals")
    row = requester.locator(f'tr[data-approval="{dashboard.request}"]')
    expect(row).to_contain_text("another person must approve")
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)
    requester.close()

    approver = browser.new_page()
    sign_in(approver, dashboard, "bob", "/approvals")
    approver.locator(f'tr[data-approval="{dashboard.request}"]').get_by_role("button", name="Approve").click()
    expect(approver.get_by_role("status")).to_contain_text(f"Approved #{dashboard.request}")
    expect(approver.locator(f'tr[data-approval="{dashboard.request}"]')).to_contain_text("by bob")
    assert dashboard.store.approval(dashboard.request)["approved_by"] == "bob"  # type: ignore[index]
    approver.close()


def test_denying_takes_a_reason(page: Page, dashboard: Dashboard) -> None:
    other = dashboard.store.request_approval("production", NEXT, ["uk"], "ada", 3600, "before the weekend")
    sign_in(page, dashboard, "bob", "/approvals")
    row = page.locator(f'tr[data-approval="{other}"]')
    row.get_by_label(f"Reason to deny #{other}").fill("not on a <b>Friday</b>")
    row.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("status")).to_contain_text(f"Denied #{other}")
    expect(page.locator(f'tr[data-approval="{other}"] q.denial')).to_have_text("not on a <b>Friday</b>")
    expect(page.locator(f'tr[data-approval="{other}"]').get_by_role("button")).to_have_count(0)
    assert dashboard.store.approval(other)["denied_by"] == "bob"  # type: ignore[index]


def test_the_windows_page_shows_the_week_ahead(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "ada", "/windows")
    page.goto(dashboard.url + "/windows?at=2026-12-21T10:00:00Z")  # a Monday morning in London
    production = page.locator('section[data-environment="production"]')
    expect(production.locator("[data-state]")).to_have_text("open")
    expect(production.locator("[data-next]")).to_have_text("closes at 2026-12-21T17:00:00+00:00 (in 7h)")
    expect(production.locator("tr[data-day]")).to_have_count(7)
    christmas = production.locator('tr[data-day="2026-12-25"] .stretch')
    expect(christmas).to_have_count(1)
    expect(christmas).to_have_attribute("title",
                                        "closed Fri 00:00–Sat 00:00: deny dates 2026-12-24..2026-12-26 (Christmas)")
    monday = production.locator('tr[data-day="2026-12-21"] .stretch.open').bounding_box()
    day = production.locator(".timeline").first.bounding_box()
    assert monday is not None
    assert day is not None
    assert 0.3 < monday["width"] / day["width"] < 0.4  # 09:00-17:00: a third of the day
    expect(page.locator('section[data-environment="staging"]')).to_contain_text("no window configured")


def test_a_release_is_one_click_from_the_fleet(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "ada")
    page.locator('table[data-environment="production"]').get_by_role("link", name=RELEASE).click()
    expect(page).to_have_url(f"{dashboard.url}/releases/{RELEASE}")
    expect(page.locator("#release-id")).to_have_text(RELEASE)
    expect(page.locator('table.where tr[data-environment="production"]')).to_contain_text("uk web (2)")


def test_history_filters_by_region_user_and_days(page: Page, dashboard: Dashboard) -> None:
    sign_in(page, dashboard, "ada", "/history")
    page.get_by_label("region").select_option("uk")
    page.get_by_label("user").fill("bob")
    page.get_by_label("from").fill("2000-01-01")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{dashboard.url}/history?environment=&status=&region=uk&user=bob&from=2000-01-01&to=")
    expect(page.locator("table.history a[href^='/deployments/']")).to_have_text([f"#{dashboard.running}"])


def test_a_forged_form_is_refused(page: Page, dashboard: Dashboard) -> None:
    other = dashboard.store.request_approval("staging", NEXT, ["uk"], "ada", 3600, None)
    sign_in(page, dashboard, "bob", "/approvals")
    form = page.locator(f'tr[data-approval="{other}"] form', has_text="Approve")
    form.locator('input[name="csrf_token"]').evaluate("input => input.value = 'forged'")
    form.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", name="403")).to_be_visible()
    expect(page.get_by_text("CSRF token is missing or wrong")).to_be_visible()
    assert dashboard.store.approval(other)["approved_by"] is None  # type: ignore[index]


def test_an_anonymous_visitor_is_sent_to_sign_in(page: Page, dashboard: Dashboard) -> None:
    for path in ("/", "/dora", f"/deployments/{dashboard.running}"):
        page.goto(dashboard.url + path)
        expect(page).to_have_url(f"{dashboard.url}/login?next={path}")
    response = page.request.get(dashboard.url + "/history", max_redirects=0)
    assert response.status == 303
