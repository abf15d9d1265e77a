"""The fleet page's stack (consistency) and flag matrices: what hosts last said they run, drift marked and
named, and every flag as each region sees it; hostile values escaped, an unreadable flag file a message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from conveyor.operations.workspace import Workspace
from conveyor.state.store import ComponentRow
from conveyor.web.app import create_app

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
    regions:
      uk: {hosts: {web: [uk-1, uk-2]}}
      za: {hosts: {web: [za-1]}}
consistency:
  components:
    python: {probe: "python3 -V"}
flags:
  file: flags.yaml
  overrides: {production: {za: {banner: festive}}}
web: {public: true}
"""
FLAGS = """\
flags:
  banner:
    state: ENABLED
    variants: {plain: plain, festive: festive}
    defaultVariant: plain
"""
HOSTILE = "<b>3.11</b>"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    (tmp_path / "flags.yaml").write_text(FLAGS)
    workspace = Workspace.load(tmp_path / "conveyor.yml")
    yield workspace
    workspace.close()


def fleet(ws: Workspace) -> str:
    response = TestClient(create_app(ws), base_url="https://testserver").get("/")
    assert response.status_code == 200
    return response.text


def test_the_fleet_page_shows_the_stack_each_region_runs_and_where_it_drifts(ws: Workspace) -> None:
    assert "No host has said what it runs yet" in fleet(ws)
    ws.store.record_components("staging", [ComponentRow("s-1", "uk", "web", "python", "Python 3.11.7")])
    ws.store.record_components("production", [
        ComponentRow("uk-1", "uk", "web", "python", "Python 3.11.7"),
        ComponentRow("uk-2", "uk", "web", "python", HOSTILE),
        ComponentRow("za-1", "za", "web", "python", None, "python3: not found")])
    html = fleet(ws)
    stack = html[html.index('data-matrix="stack"'):html.index('<h2 id="flags">')]
    assert "<th>production<br>uk web</th>" in stack
    row = stack[stack.index('data-component="python"'):]
    cells = row.split("<td")[2:]
    assert "Python 3.11.7" in cells[0]
    assert "mixed" not in cells[0]
    assert 'class="mono mixed"' in cells[1]
    assert "&lt;b&gt;3.11&lt;/b&gt; (1)" in cells[1]
    assert "za-1: python3: not found" in cells[2]
    assert '<span class="mixed">Drift</span>' in html
    assert HOSTILE not in html
    assert '<ul class="drift">' in stack


def test_the_fleet_page_shows_each_flag_as_every_region_sees_it(ws: Workspace) -> None:
    html = fleet(ws)
    flags = html[html.index('data-matrix="flags"'):]
    assert "<th>production<br>za</th>" in flags
    cells = flags[flags.index('data-flag="banner"'):].split("<td")[2:5]
    assert 'title="from file">plain' in cells[0]
    assert 'title="from file">plain' in cells[1]
    assert 'title="from conveyor.yml' in cells[2]
    assert ">festive</td>" in cells[2]


def test_an_unreadable_flag_file_is_a_message_not_an_error(ws: Workspace) -> None:
    (ws.directory / "flags.yaml").write_text("flags: [not, a, mapping]\n")
    html = fleet(ws)
    assert '<h2 id="flags">Feature flags</h2>' in html
    assert 'class="problem" role="alert">' in html.split('<h2 id="flags">')[1]
