"""What DORA's figures read from deployments: one light scan of a window of them, in start order.

A year of history is 18,000 deployments; reading each in full (and decoding its JSON columns) took most of a
second. The figures need only the scalar columns of most of them: each row comes as a plain tuple with its
regions (and, for a rollback, what it took each region off) as JSON text, decoded only for the few that
failures are judged on. `operations/dora.py` turns these into the figures with the same rules it applies to
a plain list of deployments.
"""
from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, NamedTuple

import sqlalchemy as sa

from conveyor.state import tables as t
from conveyor.state.engine import Database

_CHUNK = 500
_KEPT = 200_000  # releases whose commit a store keeps in memory: ~40 MB at most


class Outcome(NamedTuple):
    """One deployment's scalar columns (what it was and how it ended), and the text of its JSON columns the
    rules read: its regions, and what a rollback took each region off (None for anything else)."""

    id: int
    environment: str
    kind: str
    status: str
    release: str | None
    started_at: str
    finished_at: str | None
    regions: str | None
    left: str | None

    def region_list(self) -> list[str]:
        """Its regions, decoded."""
        return list(json.loads(self.regions) or []) if self.regions else []

    def left_by_region(self) -> dict[str, str | None]:
        """What a rollback took each region off, decoded ({} for anything else)."""
        return dict(json.loads(self.left) or {}) if self.left else {}

    def outline(self) -> dict[str, Any]:
        """As `Store.deployments_since` gives a deployment, but its user."""
        return {"id": self.id, "environment": self.environment, "regions": self.region_list(),
                "release": self.release, "kind": self.kind, "status": self.status, "started_at": self.started_at,
                "finished_at": self.finished_at, "previous_by_region": self.left_by_region()}


class OutcomeRecords(Database):
    """Deployments' outcomes for the DORA report."""

    def outcomes_since(self, since: str, environment: str | None = None) -> list[Outcome]:
        """Every deployment started at or after `since` (ISO 8601 in UTC, as the store writes), in start
        order (started_at, then id): scalar columns, and its JSON columns as text, decoded only where asked
        (what a rollback left only for rollbacks)."""
        d = t.deployments
        left = sa.case((d.c.kind == "rollback", sa.cast(d.c.previous_by_region, sa.Text)), else_=sa.null())
        query = sa.select(d.c.id, d.c.environment, d.c.kind, d.c.status, d.c.release, d.c.started_at,
                          d.c.finished_at, sa.cast(d.c.regions, sa.Text), left).where(
            d.c.app == self.app, d.c.started_at >= since)
        if environment is not None:
            query = query.where(d.c.environment == environment)
        with self._tx() as conn:
            return [Outcome(*row) for row in conn.execute(query.order_by(d.c.started_at, d.c.id))]

    def release_commits(self, release_ids: Collection[str]) -> dict[str, tuple[Any, Any]]:
        """release id → (sha, committed_at) as its manifest recorded them under `git` (None where it did not),
        for the releases this store saw built; read by JSON path, not by loading each manifest.

        A release is immutable (its id names its content, and it is recorded once), so what was read is kept
        for the next call on this store (a dashboard asks again on every DORA page), up to `_KEPT` releases."""
        kept: dict[str, tuple[Any, Any]] = self.__dict__.setdefault("_release_commits", {})
        missing = sorted(set(release_ids) - kept.keys())
        if len(kept) + len(missing) > _KEPT:
            kept.clear()
        r = t.releases
        with self._tx() as conn:
            for start in range(0, len(missing), _CHUNK):
                rows = conn.execute(sa.select(r.c.id, r.c.manifest[("git", "sha")].as_string(),
                                              r.c.manifest[("git", "committed_at")].as_string()).where(
                    r.c.app == self.app, r.c.id.in_(missing[start:start + _CHUNK])))
                kept.update({str(key): (sha, committed) for key, sha, committed in rows})
        return {key: kept[key] for key in release_ids if key in kept}
