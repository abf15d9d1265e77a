"""A deploy window checked before each wave: the engine stops between waves, never inside a region.

The real engine (Rollout) moves real local hosts (directories, the real host scripts run with `sh`) to a
release built with `build_release`. The window's clock (the `now` that deploy reads) is fixed by the test
and moved by a subscriber of the event bus the moment wave 1 finishes: the window closes while the deployment
runs. The product itself has no way to move its clock from outside.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.artifact import Release, build_release
from conveyor.config.loader import load_config
from conveyor.engine.events import Event, EventBus, WaveFinished, WaveHeld, WaveStarted
from conveyor.engine.plan import make_plan
from conveyor.engine.results import HostStatus, RegionOutcome, RegionStatus
from conveyor.engine.rollout import Rollout, RolloutSpec, Shipment
from conveyor.operations.deploy import Request, window_before_wave
from conveyor.operations.workspace import Workspace

INSIDE = "2026-03-10T15:50:00Z"   # Tuesday 15:50 in London: office hours
CLOSED = "2026-03-10T16:05:00Z"   # Tuesday 16:05: closed; opens Wednesday 09:00
WAVE_TWO_HELD = ("window office-hours closed before wave 2 (no allow rule matches); it opens "
                 "2026-03-11T09:00:00+00:00; `deploy --resume` then")
SERVE = 'echo "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"'


def write_config(root: Path, **production: Any) -> Path:
    """A config with one environment: waves [[a], [b, c]] of local hosts, office hours."""
    settings = {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": SERVE, "canary": 1, "batch": 1}},
        "environments": {"production": {
            "transport": "local", "window": "office-hours", "waves": [["a"], ["b", "c"]], **production,
            "regions": {"a": {"hosts": {"web": ["a-web-1", "a-web-2"]}},
                        "b": {"hosts": {"web": ["b-web-1", "b-web-2"]}},
                        "c": {"hosts": {"web": ["c-web-1"]}}},
        }},
        "windows": {"office-hours": {
            "timezone": "Europe/London",
            "allow": [{"days": "mon-thu", "hours": "09:00-16:00"}, {"days": "fri", "hours": "09:00-12:00"}],
            "deny": [{"month_days": "28-31,1-2", "reason": "month-end payment runs"}],
        }},
    }
    path = root / "conveyor.yml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """The config's workspace (as the CLI would load it)."""
    return Workspace(load_config(write_config(tmp_path)), user="tester")


@pytest.fixture
def release(workspace: Workspace) -> Release:
    """A release in the workspace's artifact store."""
    source = workspace.directory / "app"
    source.mkdir()
    (source / "VERSION").write_text("1\n")
    made, _ = build_release(source, workspace.artifacts, user="tester",
                            now=datetime(2026, 3, 10, 9, 0, tzinfo=UTC), git=None)
    return made


def roll(ws: Workspace, release: Release, before_wave: Callable[[int], str | None] | None,
         *subscribers: Callable[[Event], None]) -> list[RegionOutcome]:
    """Run the engine over every region of production, as `deploy` builds it (no state store)."""
    plan = make_plan(ws.config, "production", ws.hosts("production"))
    spec = RolloutSpec(
        app=ws.config.app, environment="production", kind="deploy", user=ws.user, deployment_id=None,
        targets={r.region: release.id for r in plan.regions},
        shipments={release.id: Shipment(release.id, release.sha256, release.path)},
        limits=ws.limits("production"), max_concurrency=ws.concurrency("production"),
        before_wave=before_wave,
    )
    rollout = Rollout(ws.config, spec, ws.transport("production"), EventBus(list(subscribers)))
    return asyncio.run(rollout.run(plan))


def current(ws: Workspace, region: str, host: str) -> str | None:
    """What a local host's `current` points at (None: there is none)."""
    link = ws.local_root("production") / "production" / region / host / "srv" / "shop" / "current"
    return os.readlink(link) if link.is_symlink() else None


def region_hosts(ws: Workspace, region: str) -> list[str]:
    return [h.name for h in ws.hosts("production")[region]]


def assert_held_after_wave_one(ws: Workspace, release: Release, outcomes: list[RegionOutcome],
                               reason: str) -> None:
    by_region = {o.region: o for o in outcomes}
    assert by_region["a"].status == RegionStatus.SUCCEEDED
    for name in region_hosts(ws, "a"):
        assert current(ws, "a", name) == f"releases/{release.id}"
    for region in ("b", "c"):
        assert (by_region[region].status, by_region[region].message) == (RegionStatus.HELD, reason)
        assert {h.status for h in by_region[region].hosts} == {HostStatus.PENDING}
        for name in region_hosts(ws, region):
            # Not one host of wave 2 was touched: no link, not even a host directory.
            assert current(ws, region, name) is None
            assert not (ws.local_root("production") / "production" / region / name).exists()


def set_clock(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    """Stand the clock that deploy's window checks read at `moment` (ISO 8601)."""
    import conveyor.operations.gating as gating_module
    from conveyor.gates.windows import parse_at

    fixed = parse_at(moment, UTC)
    monkeypatch.setattr(gating_module, "now", lambda: fixed)


def test_a_reason_before_wave_two_holds_every_region_of_it_and_moves_none_of_its_hosts(
        workspace: Workspace, release: Release) -> None:
    asked: list[int] = []
    seen: list[Event] = []

    def before_wave(number: int) -> str | None:
        asked.append(number)
        return "closed for the test" if number == 2 else None

    outcomes = roll(workspace, release, before_wave, seen.append)

    assert asked == [2]  # never asked before the first wave: the start of a deployment has its own gates
    assert_held_after_wave_one(workspace, release, outcomes, "closed for the test")
    kinds = [(e.kind, e.wave) for e in seen if isinstance(e, WaveStarted | WaveFinished | WaveHeld)]
    assert kinds == [("wave_started", 1), ("wave_finished", 1), ("wave_held", 2)]
    held = next(e for e in seen if isinstance(e, WaveHeld))
    assert held.reason == "closed for the test"


def test_the_window_closing_while_wave_one_runs_holds_wave_two_and_says_when_it_opens(
        workspace: Workspace, release: Release, monkeypatch: pytest.MonkeyPatch) -> None:
    set_clock(monkeypatch, INSIDE)

    def clock_moves(event: Event) -> None:
        if isinstance(event, WaveFinished) and event.wave == 1:
            set_clock(monkeypatch, CLOSED)

    outcomes = roll(workspace, release, window_before_wave(workspace, "production", Request("production")),
                    clock_moves)

    assert_held_after_wave_one(workspace, release, outcomes, WAVE_TWO_HELD)


def test_a_window_that_stays_open_lets_every_wave_go(
        workspace: Workspace, release: Release, monkeypatch: pytest.MonkeyPatch) -> None:
    set_clock(monkeypatch, INSIDE)

    outcomes = roll(workspace, release, window_before_wave(workspace, "production", Request("production")))

    assert {o.region: o.status for o in outcomes} == dict.fromkeys("abc", RegionStatus.SUCCEEDED)
    for region in "abc":
        for name in region_hosts(workspace, region):
            assert current(workspace, region, name) == f"releases/{release.id}"


def test_break_glass_and_an_environment_without_a_window_are_never_held_between_waves(
        workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_clock(monkeypatch, CLOSED)
    closed = window_before_wave(workspace, "production", Request("production"))
    assert closed(2) == WAVE_TWO_HELD
    assert closed(3) == WAVE_TWO_HELD.replace("wave 2", "wave 3")

    glass = Request("production", reason="INC-42", break_glass=True)
    assert window_before_wave(workspace, "production", glass)(2) is None

    (tmp_path / "open").mkdir()
    no_window = Workspace(load_config(write_config(tmp_path / "open", window=None)), user="tester")
    assert window_before_wave(no_window, "production", Request("production"))(2) is None
