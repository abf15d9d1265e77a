"""The rollout engine on an injected clock: a 10-minute bake and 5-minute canary bakes in well under a second.

Real releases are built and really deployed to a local fleet (directories under tmp_path, the real host
scripts run by `sh`); only time is fake: `sleep` advances the clock at once. The watched check is a command
run on the controller (`on: local`) that appends its region to a file, so the measurements taken can be
counted both from the engine's events and from what actually ran.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from conveyor.artifact import LocalStore, Release, build_release
from conveyor.config.models import Config
from conveyor.engine.events import Event, EventBus, Measured
from conveyor.engine.plan import make_plan
from conveyor.engine.results import HostStatus, RegionOutcome, RegionStatus
from conveyor.engine.rollout import Rollout, RolloutSpec, Shipment
from conveyor.inventory.host import static_hosts
from conveyor.transport.local import LocalTransport

ENV = "production"
INTERVAL = 30.0
CANARY_BAKE = 300.0
BAKE = 600.0


class FakeTime:
    """A monotonic clock that only moves when the engine sleeps, and then at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        self.slept += max(seconds, 0.0)
        await asyncio.sleep(0)


def fleet_config(log: Path, command: str) -> Config:
    """Two regions of two web hosts, one wave each; the canary bakes 5m, the first wave bakes 10m."""
    check = {"command": f"{command} && printf '%s\\n' $region >> {shlex.quote(str(log))}", "on": "local",
             "interval": f"{INTERVAL:g}s"}
    return Config.model_validate({
        "app": "shop",
        "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": "true", "canary": 1, "batch": 1, "canary_bake": "5m"}},
        "environments": {ENV: {
            "transport": "local", "waves": [["a"], ["b"]], "bake": "10m", "checks": [check],
            "regions": {r: {"hosts": {"web": [f"{r}-web-1", f"{r}-web-2"]}} for r in ("a", "b")},
        }},
    })


@dataclass
class Run:
    """One rollout: its outcomes, its measurements as (phase, scope, verdict, virtual seconds since it
    began), the fake clock and the real seconds it took."""

    outcomes: list[RegionOutcome]
    seen: list[tuple[str, str, str, float]]
    fake: FakeTime
    real: float


@dataclass
class Fleet:
    """A local fleet under tmp_path and a store of releases built for it."""

    tmp_path: Path
    releases: list[Release] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.tmp_path / "hosts"

    @property
    def log(self) -> Path:
        return self.tmp_path / "measured.log"

    def build(self, version: str) -> Release:
        source = self.tmp_path / f"app-{version}"
        source.mkdir()
        (source / "VERSION").write_text(f"{version}\n")
        release, _created = build_release(source, LocalStore(self.tmp_path / "store"), user="tester",
                                          now=datetime(2026, 3, 2, 10, len(self.releases), tzinfo=UTC), git=None)
        self.releases.append(release)
        return release

    def roll(self, release: Release, *, command: str = "true", kind: str = "deploy") -> Run:
        """Move every host to `release` on fake time, with the environment's bake and checks in the spec."""
        config = fleet_config(self.log, command)
        fake = FakeTime()
        start = fake.now
        seen: list[tuple[str, str, str, float]] = []

        def listen(event: Event) -> None:
            if isinstance(event, Measured):
                m = event.measurement
                seen.append((event.phase, m.scope, str(m.verdict), fake.now - start))

        plan = make_plan(config, ENV, static_hosts(config, ENV))
        environment = config.environments[ENV]
        spec = RolloutSpec(
            app=config.app, environment=ENV, kind=kind, user="tester", deployment_id=None,
            targets={r.region: release.id for r in plan.regions},
            shipments={release.id: Shipment(release.id, release.sha256, release.path)},
            revert_on_failure=kind == "deploy",
            bake=environment.bake, checks=list(environment.checks), clock=fake.clock, sleep=fake.sleep,
        )
        bus = EventBus([listen])
        began = time.monotonic()
        outcomes = asyncio.run(Rollout(config, spec, LocalTransport(self.root), bus).run(plan))
        real = time.monotonic() - began
        assert bus.errors == []
        return Run(outcomes, seen, fake, real)

    def current(self, region: str, host: str) -> str | None:
        link = self.root / ENV / region / host / "srv" / "shop" / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def currents(self) -> set[str | None]:
        return {self.current(r, f"{r}-web-{i}") for r in "ab" for i in (1, 2)}


def slots(seconds: float) -> list[float]:
    """The virtual times (since the watch began) of a watch's measurements: at once, then every interval."""
    return [k * INTERVAL for k in range(int(seconds // INTERVAL) + 1)]


def test_a_ten_minute_bake_and_five_minute_canary_bakes_run_on_the_injected_clock(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    release = fleet.build("1")
    run = fleet.roll(release)

    assert {o.region: o.status for o in run.outcomes} == {"a": RegionStatus.SUCCEEDED, "b": RegionStatus.SUCCEEDED}
    assert {h.status for o in run.outcomes for h in o.hosts} == {HostStatus.SUCCEEDED}
    assert fleet.currents() == {release.id}

    per_phase = Counter((phase, scope) for phase, scope, _verdict, _at in run.seen)
    canary, bake = len(slots(CANARY_BAKE)), len(slots(BAKE))
    assert (canary, bake) == (11, 21)
    # Each region's canary bakes; the first wave bakes before the second starts; the last wave does not.
    assert per_phase == {("canary_bake", "region a"): canary, ("bake", "region a"): bake,
                         ("canary_bake", "region b"): canary}, per_phase
    assert {verdict for _p, _s, verdict, _at in run.seen} == {"pass"}
    # On the clock: a's canary bake, then the wave's bake, then b's canary bake, each on its interval grid.
    assert [at for _p, _s, _v, at in run.seen] == (slots(CANARY_BAKE) + [CANARY_BAKE + t for t in slots(BAKE)]
                                                   + [CANARY_BAKE + BAKE + t for t in slots(CANARY_BAKE)])
    assert run.fake.slept == CANARY_BAKE + BAKE + CANARY_BAKE

    # The command really ran once per measurement.
    assert Counter(fleet.log.read_text().split()) == {"a": canary + bake, "b": canary}
    # Typically 0.3s; the bound leaves room for a loaded machine and still rules out any real waiting.
    assert run.real < 5.0, f"20 virtual minutes took {run.real:.2f}s of real time"


def test_a_check_that_fails_on_the_canary_stops_at_once_and_switches_the_region_back(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    run = fleet.roll(fleet.build("1"), command='test "$region" != a')

    a, b = run.outcomes
    assert (a.status, b.status) == (RegionStatus.ROLLED_BACK, RegionStatus.SKIPPED)
    assert a.message is not None
    assert "web canary bake failed" in a.message
    assert [(h.host.name, h.status) for h in a.hosts] == [("a-web-1", HostStatus.ROLLED_BACK),
                                                          ("a-web-2", HostStatus.PENDING)]
    assert {h.status for h in b.hosts} == {HostStatus.PENDING}
    assert run.seen == [("canary_bake", "region a", "fail", 0.0)]  # the first failure ends the bake
    assert run.fake.slept == 0.0
    assert fleet.currents() == {None}  # a first deploy undone; nothing else was touched
    assert not (fleet.root / ENV / "b").exists()
    assert run.real < 5.0


def test_a_rollback_does_not_bake_even_while_the_checks_fail(tmp_path: Path) -> None:
    # Rolling back during an incident: the checks fail because of the release being undone (and metrics
    # lag). The rollback must neither wait out the bakes nor stop after its first canary.
    fleet = Fleet(tmp_path)
    first, second = fleet.build("1"), fleet.build("2")
    fleet.roll(first)
    fleet.roll(second)
    assert fleet.currents() == {second.id}

    run = fleet.roll(first, command="false", kind="rollback")

    assert {o.region: o.status for o in run.outcomes} == {"a": RegionStatus.SUCCEEDED, "b": RegionStatus.SUCCEEDED}
    assert fleet.currents() == {first.id}
    assert run.seen == []
    assert run.fake.slept == 0.0
