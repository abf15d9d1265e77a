"""`report dora` reads the store's outline of a history (state/outcomes.py) instead of every deployment in full:
its figures must be exactly those the previous computation (every deployment, in Python) gives, on SQLite and
PostgreSQL, for a generated history with every shape the rules care about: region subsets, rollbacks, failures
restored by a later deploy elsewhere, ties in start time, deployments still running, finished "in the future"
(clock skew), releases without a manifest or without a recorded commit time, an environment the config has
forgotten."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conveyor.config.loader import load_config
from conveyor.operations.dora import (
    CHANGED,
    _restored_at,
    _runs,
    _Tally,
    _undone_by_rollback,
    figures,
    release_commit_times,
    report,
    week_of,
    window_start,
)
from conveyor.operations.workspace import Workspace
from conveyor.state import tables as t
from conveyor.state.store import Store, iso

NOW = datetime(2026, 12, 6, 12, 0, 30, 250000, tzinfo=UTC)
REGIONS = ("uk", "za", "us")
CONFIG = """\
app: www
roles:
  web: {}
environments:
  staging:
    transport: local
    regions: {uk: {hosts: {web: [s-1]}}, za: {hosts: {web: [s-2]}}, us: {hosts: {web: [s-3]}}}
  production:
    transport: local
    regions: {uk: {hosts: {web: [p-1]}}, za: {hosts: {web: [p-2]}}, us: {hosts: {web: [p-3]}}}
"""


def previous_environment_figures(deployments: Sequence[Mapping[str, Any]], commit_times: Mapping[str, datetime],
                                 *, since: datetime, until: datetime) -> dict[str, Any]:
    """The computation before the store's outline, unchanged: every deployment, in Python (commit 9ea05c4)."""
    runs = _runs(deployments)
    undone = _undone_by_rollback(runs)
    labels = []
    monday = since
    while monday < until:
        labels.append((week_of(monday), monday.date()))
        monday += timedelta(weeks=1)
    weeks = {label: _Tally() for label, _ in labels}
    total = _Tally()
    delivered: set[str] = set()
    for position, run in enumerate(runs):
        row = run.row
        if row.get("kind") != "deploy" or not since <= run.at < until:
            continue
        tallies = [total, weeks[week_of(run.at)]] if week_of(run.at) in weeks else [total]
        status = row.get("status")
        release = row.get("release")
        if status == "succeeded":
            lead: float | None = None
            if release and release not in delivered:
                delivered.add(release)
                committed = commit_times.get(release)
                if committed is not None and run.finished is not None:
                    lead = max(0.0, (run.finished - committed).total_seconds())
            for tally in tallies:
                tally.deployments += 1
                if lead is not None:
                    tally.lead_times.append(lead)
        if status not in CHANGED:
            continue
        restore: float | None = None
        failed = True
        if status == "rolled_back":
            restore = (run.at - run.started).total_seconds()
        elif status == "failed":
            back = _restored_at(runs, position)
            restore = (back - run.started).total_seconds() if back else None
        elif position in undone:
            rollback = undone[position]
            restore = ((rollback.finished - run.at).total_seconds() if rollback.finished else None)
        else:
            failed = False
        for tally in tallies:
            tally.changes += 1
            if failed:
                tally.failures += 1
                if restore is None:
                    tally.unrestored += 1
                else:
                    tally.restores.append(max(0.0, restore))
    days = max((until - since).total_seconds() / 86400, 1 / 24)
    return {
        "total": {**total.figures(), "deployments_per_day": round(total.deployments / days, 3)},
        "weeks": [{"week": label, "start": start.isoformat(), **weeks[label].figures()} for label, start in labels],
    }


def previous_report(ws: Workspace, environment: str | None, weeks: int) -> dict[str, Any]:
    """The previous `report`: every deployment of the window in full, every manifest, figures in Python."""
    since = window_start(NOW, weeks)
    rows = ws.store.deployments_since(iso(since), environment)
    manifests = ws.store.release_manifests([r["release"] for r in rows if r["kind"] == "deploy" and r["release"]])
    times = release_commit_times(manifests, {})
    envs = [environment] if environment else [*ws.config.environments,
                                              *sorted({r["environment"] for r in rows} - set(ws.config.environments))]
    return {"since": since.isoformat(timespec="seconds"), "until": NOW.isoformat(timespec="seconds"),
            "weeks": weeks, "environments": {
                env: previous_environment_figures([r for r in rows if r["environment"] == env], times, since=since,
                                                  until=NOW) for env in envs}}


def generate(store: Store, seed: int, count: int = 700) -> None:
    """`count` deployments over 16 weeks up to NOW (and a few after it), written as the store's rows."""
    chance = random.Random(seed)  # reproducible data, not secrets
    releases: list[str] = []
    running = {env: dict.fromkeys(REGIONS) for env in ("staging", "production", "legacy")}
    deployments, manifests = [], []
    started = NOW - timedelta(weeks=16)
    for number in range(1, count + 1):
        if chance.random() > 0.06:  # else: the same second as the one before (order by id then)
            started += timedelta(seconds=chance.uniform(600, 4 * 3600))
        env = chance.choice(("staging", "staging", "production", "production", "legacy"))
        regions = list(REGIONS) if chance.random() < 0.6 else sorted(chance.sample(REGIONS, chance.randint(1, 2)))
        kind = chance.choices(("deploy", "rollback", "flags"), (85, 10, 5))[0]
        status = chance.choices(("succeeded", "failed", "rolled_back", "blocked", "interrupted", "running"),
                                (68, 9, 7, 6, 5, 5))[0]
        previous = {region: running[env][region] for region in regions}
        if kind == "rollback" and releases:
            release: str | None = chance.choice(releases[-6:])
        elif kind == "flags":
            release = None
        elif not releases or chance.random() < 0.45:
            built = started - timedelta(minutes=chance.uniform(5, 50))
            release = f"{built.strftime('%Y%m%dT%H%M%SZ')}-{number:08x}"
            releases.append(release)
            shape = chance.random()
            if shape < 0.8:  # a commit time, in UTC or with the committer's offset
                offset = timedelta(hours=chance.choice((0, 2, -5)))
                committed = (built - timedelta(minutes=chance.uniform(1, 900))).astimezone(timezone(offset))
                git: dict[str, Any] | None = {"sha": f"{number:040x}", "committed_at": committed.isoformat()}
            elif shape < 0.9:  # built before commit times were recorded
                git = {"sha": f"{number:040x}"}
            else:  # built outside git
                git = None
            if chance.random() < 0.93:  # else: the store never saw it built
                manifests.append({"app": "www", "id": release, "sha256": "0" * 64, "size": 1, "user": "ci",
                                  "created_at": iso(built), "manifest": {"id": release, "git": git}})
        else:
            release = chance.choice(releases[-5:])
        finished = None if status == "running" else started + timedelta(seconds=chance.uniform(30, 5400))
        if finished is not None and chance.random() < 0.01:
            finished = NOW + timedelta(hours=3)  # a controller whose clock runs ahead
        deployments.append({
            "id": number, "app": "www", "environment": env, "regions": regions, "release": release,
            "previous": None, "previous_by_region": previous, "kind": kind, "status": status,
            "started_at": iso(started), "finished_at": iso(finished) if finished else None, "user": "ada",
            "failed_hosts": [], "overrides": []})
        if status == "succeeded" and release:
            running[env].update(dict.fromkeys(regions, release))
    with store.engine.begin() as conn:
        conn.execute(t.releases.insert(), manifests)
        conn.execute(t.deployments.insert(), deployments)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('deployments', 'id'), max(id)) FROM deployments")


@pytest.fixture
def ws(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no work tree: commit times from manifests
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    return Workspace(load_config(tmp_path / "conveyor.yml"), user="ada", state_url=store.url)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_report_from_the_store_outline_is_the_previous_computation(ws: Workspace, store: Store,
                                                                      seed: int) -> None:
    generate(store, seed)
    try:
        for weeks in (1, 4, 12, 20):
            for environment in (None, "production", "staging"):
                expected = previous_report(ws, environment, weeks)
                assert report(ws, environment, weeks=weeks, now=NOW) == expected, (weeks, environment)
        rows = store.deployments_since(iso(window_start(NOW, 12)))
        manifests = store.release_manifests([r["release"] for r in rows if r["release"]])
        assert figures(rows, release_commit_times(manifests, {}), ["staging", "production", "legacy"], weeks=12,
                       now=NOW) == previous_report(ws, None, 12)  # the plain-list path agrees too
    finally:
        ws.close()


def test_the_generated_history_has_the_shapes_the_rules_care_about(ws: Workspace, store: Store) -> None:
    generate(store, 1)
    try:
        document = report(ws, None, weeks=20, now=NOW)
        totals = [entry["total"] for entry in document["environments"].values()]
        assert list(document["environments"]) == ["staging", "production", "legacy"]
        assert sum(total["failures"] for total in totals) > 20
        assert sum(total["restores"] for total in totals) > 20
        assert sum(total["lead_time_samples"] for total in totals) > 50
        rows = store.deployments_since(iso(window_start(NOW, 20)))
        assert any(len(row["regions"]) < len(REGIONS) and row["status"] == "failed" for row in rows)
        assert any(row["kind"] == "rollback" and row["status"] == "succeeded" for row in rows)
    finally:
        ws.close()
