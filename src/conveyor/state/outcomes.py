"""What DORA's figures read from deployments: a light scan of a window of them, and detail only where needed.

A year of history is 18,000 deployments; reading each in full (and decoding its JSON columns) took most of a
second. The figures need the full row (regions, what a rollback took regions off) only for the few
deployments failures are judged on; for the rest, the scalar columns in start order are enough, read as
plain tuples. `operations/dora.py` turns these into the figures with the same rules it applies to a plain
list of deployments.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

import sqlalchemy as sa

from conveyor.state import tables as t
from conveyor.state.engine import Database

# The columns of a deployment the figures' rules read (not its audit detail).
_OUTLINE = ("id", "environment", "regions", "release", "kind", "status", "started_at", "finished_at",
            "previous_by_region")
_CHUNK = 500
_KEPT = 200_000  # releases whose commit a store keeps in memory: ~40 MB at most


class Outcome(NamedTuple):
    """One deployment's scalar columns: what it was and how it ended."""

    id: int
    environment: str
    kind: str
    status: str
    release: str | None
    started_at: str
    finished_at: str | None


class OutcomeRecords(Database):
    """Deployments' outcomes for the DORA report."""

    def outcomes_since(self, since: str, environment: str | None = None) -> list[Outcome]:
        """Every deployment started at or after `since` (ISO 8601 in UTC, as the store writes), in start
        order (started_at, then id), as scalar columns only."""
        d = t.deployments
        query = sa.select(d.c.id, d.c.environment, d.c.kind, d.c.status, d.c.release, d.c.started_at,
                          d.c.finished_at).where(d.c.app == self.app, d.c.started_at >= since)
        if environment is not None:
            query = query.where(d.c.environment == environment)
        with self._tx() as conn:
            return [Outcome(*row) for row in conn.execute(query.order_by(d.c.started_at, d.c.id))]

    def outlines(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """id → the deployment's outline (the columns `deployments_since` has but the user), for those named."""
        d = t.deployments
        found: dict[int, dict[str, Any]] = {}
        wanted = sorted(set(ids))
        with self._tx() as conn:
            for start in range(0, len(wanted), _CHUNK):
                for row in conn.execute(sa.select(*(d.c[name] for name in _OUTLINE)).where(
                        d.c.app == self.app, d.c.id.in_(wanted[start:start + _CHUNK]))):
                    outline = dict(zip(_OUTLINE, row, strict=True))
                    outline["regions"] = list(outline["regions"] or [])
                    outline["previous_by_region"] = dict(outline["previous_by_region"] or {})
                    found[outline["id"]] = outline
        return found

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
