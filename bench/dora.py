"""The aggregate reads a dashboard of deployment performance (DORA's four keys) makes of the state store, as
SQLAlchemy Core over the store's own tables: what bench/history.py times on a year of deployments.

Each takes the store and the start of the window (ISO 8601, as the store writes times) and returns plain data.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.metrics.deployments import deployment_counts
from conveyor.state import tables as t
from conveyor.state.store import Store

d, r, hr = t.deployments, t.releases, t.host_results


def _rows(store: Store, query: sa.Select[Any]) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(query).all())


def frequency(store: Store, since: str) -> dict[str, dict[str, int]]:
    """environment → day → successful deploys."""
    day = sa.func.substr(d.c.started_at, 1, 10)
    rows = _rows(store, sa.select(d.c.environment, day, sa.func.count()).where(
        d.c.app == store.app, d.c.started_at >= since, d.c.kind == "deploy", d.c.status == "succeeded",
    ).group_by(d.c.environment, day))
    out: dict[str, dict[str, int]] = {}
    for env, when, count in rows:
        out.setdefault(env, {})[when] = int(count)
    return out


def failure_rate(store: Store, since: str) -> dict[str, float]:
    """environment → the share of finished deployments that failed, were rolled back or were a rollback."""
    rows = _rows(store, sa.select(d.c.environment, d.c.kind, d.c.status, sa.func.count()).where(
        d.c.app == store.app, d.c.started_at >= since, d.c.status.not_in(("running", "blocked")),
    ).group_by(d.c.environment, d.c.kind, d.c.status))
    total: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for env, kind, status, count in rows:
        total[env] += count
        if kind == "rollback" or status in ("failed", "rolled_back"):
            bad[env] += count
    return {env: bad[env] / total[env] for env in total}


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def lead_time(store: Store, since: str) -> dict[str, float]:
    """environment → median seconds from a release's build to its successful deploy."""
    rows = _rows(store, sa.select(d.c.environment, r.c.created_at, d.c.finished_at)
                 .join(r, sa.and_(r.c.app == d.c.app, r.c.id == d.c.release)).where(
        d.c.app == store.app, d.c.started_at >= since, d.c.kind == "deploy", d.c.status == "succeeded"))
    by_env: dict[str, list[float]] = {}
    for env, built, finished in rows:
        by_env.setdefault(env, []).append(_seconds(built, finished))
    return {env: statistics.median(values) for env, values in by_env.items()}


def time_to_restore(store: Store, since: str) -> dict[str, float]:
    """environment → median seconds from a failed deployment to the next one that succeeded."""
    rows = _rows(store, sa.select(d.c.environment, d.c.status, d.c.started_at, d.c.finished_at).where(
        d.c.app == store.app, d.c.started_at >= since, d.c.status.in_(("succeeded", "failed", "rolled_back")),
    ).order_by(d.c.environment, d.c.id))
    broken: dict[str, str] = {}
    spans: dict[str, list[float]] = {}
    for env, status, started, finished in rows:
        if status != "succeeded":
            broken.setdefault(env, started)
        elif env in broken and finished:
            spans.setdefault(env, []).append(_seconds(broken.pop(env), finished))
    return {env: statistics.median(values) for env, values in spans.items()}


def failing_hosts(store: Store, since: str) -> list[tuple[str, int]]:
    """The ten hosts that failed most often in the window, with how often."""
    rows = _rows(store, sa.select(hr.c.host, sa.func.count().label("n"))
                 .join(d, d.c.id == hr.c.deployment_id).where(
        d.c.app == store.app, d.c.started_at >= since, hr.c.status == "failed",
    ).group_by(hr.c.host).order_by(sa.desc("n")).limit(10))
    return [(host, int(n)) for host, n in rows]


def counts(store: Store, since: str) -> dict[tuple[str, str, str], int]:
    """What the metrics exporter counts after every deployment: all deployments by environment, kind, status."""
    return dict(deployment_counts(store, store.app, ["staging", "production"]))


DORA_QUERIES: dict[str, Callable[[Store, str], Any]] = {
    "dashboard: deploys per day (30 days)": frequency,
    "dashboard: change failure rate (30 days)": failure_rate,
    "dashboard: lead time, build to live (30 days)": lead_time,
    "dashboard: time to restore (30 days)": time_to_restore,
    "dashboard: most failing hosts (30 days)": failing_hosts,
    "metrics: deployments by status (all time)": counts,
}
