"""The windows page: each environment's deploy window now, its next change, and the week ahead as a calendar,
all from the deploy gate's own judge (gates.windows.evaluate); Starlette's TestClient over a real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from conveyor.config.windows import Window
from conveyor.operations.windows import week_ahead
from conveyor.operations.workspace import Workspace
from conveyor.web.app import create_app

OFFICE = {"timezone": "Europe/London",
          "allow": [{"days": "mon-thu", "hours": "09:00-16:00"}, {"days": "fri", "hours": "09:00-12:00"}],
          "deny": [{"dates": "2026-12-24..2027-01-01", "reason": "<b>holidays</b> & freeze"}]}
CONFIG = """\
app: www
roles:
  web: {}
environments:
  staging:
    transport: local
    regions:
      uk: {hosts: {web: [s-1]}}
  production:
    transport: local
    window: office-hours
    regions:
      uk: {hosts: {web: [p-1]}}
windows:
  office-hours:
    timezone: Europe/London
    allow: [{days: mon-thu, hours: "09:00-16:00"}, {days: fri, hours: "09:00-12:00"}]
    deny: [{dates: "2026-12-24..2027-01-01", reason: "<b>holidays</b> & freeze"}]
web: {public: true}
"""


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    ws = Workspace.load(tmp_path / "conveyor.yml")
    yield TestClient(create_app(ws), base_url="https://testserver")
    ws.close()


def test_the_week_ahead_is_the_gates_verdict_at_every_moment() -> None:
    window = Window.model_validate(OFFICE)
    now = datetime(2026, 12, 20, 15, 0, tzinfo=UTC)  # a Sunday; the freeze starts on Thursday
    calendar = week_ahead("office-hours", window, now)
    assert [day.day.isoformat() for day in calendar] == [f"2026-12-{d}" for d in range(20, 27)]
    for day in calendar:
        assert sum(s.width for s in day.stretches) == pytest.approx(100, abs=0.01)
    monday = calendar[1]
    assert [(s.span.open, s.left, s.width) for s in monday.stretches] == [
        (False, 0, 37.5), (True, 37.5, pytest.approx(29.167)), (False, pytest.approx(66.667), pytest.approx(33.333))]
    assert calendar[0].now == pytest.approx(62.5)  # 15:00 on the Sunday
    assert all(day.now is None for day in calendar[1:])
    thursday = calendar[4]
    assert [(s.span.open, s.span.reason) for s in thursday.stretches] == [(False, "<b>holidays</b> & freeze")]
    # Every half hour of the week, the calendar says what the deploy gate's window says.
    for day in calendar:
        for stretch in day.stretches:
            moment = stretch.span.start
            while moment < stretch.span.end:
                assert window.is_open(moment) == stretch.span.open, moment
                moment += timedelta(minutes=30)


def test_a_day_the_clocks_go_forward_has_23_hours() -> None:
    window = Window.model_validate({"timezone": "Europe/London", "allow": [{"hours": "00:00-12:00"}]})
    calendar = week_ahead("mornings", window, datetime(2026, 3, 28, 20, tzinfo=UTC))
    change = calendar[1]  # Sunday 29 March 2026: 01:00 GMT is 02:00 BST
    assert change.day.isoformat() == "2026-03-29"
    assert [(s.span.open, s.width) for s in change.stretches] == [
        (True, pytest.approx(11 / 23 * 100, abs=0.001)), (False, pytest.approx(12 / 23 * 100, abs=0.001))]


def test_the_page_says_open_or_closed_the_next_change_and_escapes_the_rules(client: TestClient) -> None:
    page = client.get("/windows", params={"at": "2026-12-21T10:00:00+00:00"})  # a Monday, 10:00 in London
    assert page.status_code == 200
    production = page.text.split('data-environment="production"')[1]
    assert '<span class="status open" data-state>open</span>' in production
    assert "closes at 2026-12-21T16:00:00+00:00 (in 6h)" in production
    assert production.count('<tr data-day="') == 7
    assert "&lt;b&gt;holidays&lt;/b&gt; &amp; freeze" in production
    assert "<b>holidays</b>" not in page.text
    staging = page.text.split('data-environment="staging"')[1].split("<section")[0]
    assert "no window configured" in staging
    assert "calendar" not in staging

    frozen = client.get("/windows", params={"at": "2026-12-24T10:00:00+00:00"}).text.split(
        'data-environment="production"')[1]
    assert '<span class="status closed" data-state>closed</span>' in frozen
    assert "opens at 2027-01-04T09:00:00+00:00 (in 10d 23h)" in frozen


def test_a_bad_time_is_refused_and_not_echoed_as_markup(client: TestClient) -> None:
    for at in ("yesterday<script>", "9" * 200):
        response = client.get("/windows", params={"at": at})
        assert response.status_code == 400
        assert "<script>" not in response.text
