"""The state store: releases, deployments, host results, pointers, locks and the audit trail.

SQLite by default (one file beside the config), PostgreSQL for teams; SQLAlchemy Core underneath. `Store`
holds the records; the stack hosts run on it inherits from `components.StackRecords`, the locks and leases
from `locks.Locking`, the connection from `engine.Database`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.secrets import mask
from conveyor.state import clock
from conveyor.state import tables as t

# Callers import these from here.
from conveyor.state.clock import DatabaseTime, iso, utcnow
from conveyor.state.components import ComponentRow, StackRecords
from conveyor.state.engine import default_url
from conveyor.state.locks import Lease, LockInfo, lock_json
from conveyor.state.outcomes import OutcomeRecords
from conveyor.state.users import UserRecords

__all__ = ["ComponentRow", "DatabaseTime", "Lease", "LockInfo", "Store", "default_url", "iso", "lock_json", "utcnow"]


class Store(StackRecords, UserRecords, OutcomeRecords):
    """All reads and writes of deployment state for one app."""

    # -- releases ---------------------------------------------------------------------------
    def record_release(self, manifest: dict[str, Any]) -> None:
        """Remember a built release (idempotent)."""
        row = {
            "app": self.app, "id": manifest["id"], "sha256": manifest["sha256"], "size": manifest["size"],
            "created_at": manifest["created_at"], "user": manifest["user"], "manifest": manifest,
        }
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(t.releases.c.id).where(t.releases.c.app == self.app, t.releases.c.id == manifest["id"])
            ).first()
            if not exists:
                conn.execute(t.releases.insert().values(**row))

    def release_manifest(self, release_id: str) -> dict[str, Any] | None:
        """The manifest recorded for a release (None if this store never saw it)."""
        with self._tx() as conn:
            row = conn.execute(sa.select(t.releases.c.manifest).where(
                t.releases.c.app == self.app, t.releases.c.id == release_id)).first()
        return dict(row.manifest) if row is not None and isinstance(row.manifest, dict) else None

    def release_manifests(self, release_ids: list[str]) -> dict[str, dict[str, Any]]:
        """release id → its recorded manifest, for those of `release_ids` this store saw built."""
        r = t.releases
        found: dict[str, dict[str, Any]] = {}
        with self._tx() as conn:
            for chunk in _chunks(sorted(set(release_ids)), 500):
                rows = conn.execute(sa.select(r.c.id, r.c.manifest).where(r.c.app == self.app, r.c.id.in_(chunk)))
                found.update({row.id: dict(row.manifest) for row in rows if isinstance(row.manifest, dict)})
        return found

    # -- deployments ------------------------------------------------------------------------
    def start_deployment(self, *, environment: str, regions: list[str], release: str | None,
                         previous_by_region: dict[str, str | None], kind: str, user: str,
                         reason: str | None = None, status: str = "running",
                         overrides: list[str] | None = None, approval_id: int | None = None) -> int:
        """Record a deployment as running and return its id."""
        values = [v for v in previous_by_region.values() if v]
        previous = max(set(values), key=values.count) if values else None
        with self._write() as conn:
            result = conn.execute(t.deployments.insert().values(
                app=self.app, environment=environment, regions=regions, release=release, previous=previous,
                previous_by_region=previous_by_region, kind=kind, status=status, started_at=iso(clock.utcnow()),
                user=user, reason=mask(reason) if reason else None, failed_hosts=[],
                overrides=overrides or [], approval_id=approval_id,
            ))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def set_release(self, deployment_id: int, release: str | None) -> None:
        """Record the release a deployment turned out to move to (a rollback finds it on the hosts)."""
        with self._write() as conn:
            conn.execute(t.deployments.update().where(t.deployments.c.id == deployment_id).values(release=release))

    def replaced_by(self, environment: str, region: str, release: str, *, scan: int = 50) -> str | None:
        """What `region` ran before `release` was last deployed to it (None when the store does not know)."""
        d = t.deployments
        with self._tx() as conn:
            rows = conn.execute(sa.select(d.c.regions, d.c.previous_by_region).where(
                d.c.app == self.app, d.c.environment == environment, d.c.kind == "deploy", d.c.release == release,
            ).order_by(d.c.id.desc()).limit(scan)).all()
        for row in rows:
            before = (row.previous_by_region or {}).get(region)
            if region in (row.regions or []) and before and before != release:
                return str(before)
        return None

    def update_previous(self, deployment_id: int, previous_by_region: dict[str, str | None]) -> None:
        """Record what the regions ran before, once the hosts have told us."""
        values = [v for v in previous_by_region.values() if v]
        previous = max(set(values), key=values.count) if values else None
        with self._write() as conn:
            conn.execute(t.deployments.update().where(t.deployments.c.id == deployment_id).values(
                previous=previous, previous_by_region=previous_by_region))

    def finish_deployment(self, deployment_id: int, status: str, failed_hosts: list[str],
                          summary: str | None = None) -> None:
        """Record how a deployment ended. A deployment already marked `interrupted` (its lock was taken over,
        or it was reaped) stays interrupted: this never overwrites it, and needs no lease."""
        d = t.deployments
        with self._tx() as conn:
            conn.execute(d.update().where(d.c.id == deployment_id).values(
                status=sa.case((d.c.status == "interrupted", d.c.status), else_=sa.literal(status)),
                finished_at=iso(clock.utcnow()), failed_hosts=failed_hosts, summary=mask(summary) if summary else None))

    def record_host_results(self, deployment_id: int, results: list[dict[str, Any]], *,
                            first: Collection[str] = ()) -> None:
        """Keep several hosts' outcomes in one transaction; a host's later outcome replaces its earlier one.
        The hosts in `first` have none recorded for this deployment yet (its recorder, the one writer under
        its lease, knows): no earlier row of theirs is looked for, a lookup that costs PostgreSQL a scan of the
        deployment's rows."""
        latest = {result["host"]: result for result in results}  # the last word on each host
        if not latest:
            return
        rows = []
        for host, result in latest.items():
            tail = result.get("output_tail")
            rows.append({
                "deployment_id": deployment_id, "host": host, "region": result["region"], "role": result["role"],
                "status": result["status"], "release": result.get("release"), "previous": result.get("previous"),
                "step": result.get("step"), "exit_code": result.get("exit_code"),
                "output_tail": mask(tail) if tail else None, "duration": result.get("duration"),
                "error": mask(result["error"]) if result.get("error") else None, "note": result.get("note"),
                "transferred": bool(result.get("transferred")), "transfer": result.get("transfer"),
            })
        with self._write() as conn:
            for chunk in _chunks([host for host in latest if host not in first], 500):
                conn.execute(t.host_results.delete().where(t.host_results.c.deployment_id == deployment_id,
                                                           t.host_results.c.host.in_(chunk)))
            conn.execute(t.host_results.insert(), rows)

    def host_results(self, deployment_id: int) -> list[dict[str, Any]]:
        """Every host outcome of a deployment."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.host_results).where(t.host_results.c.deployment_id == deployment_id)
                                .order_by(t.host_results.c.id)).mappings().all()
        return [{k: v for k, v in row.items() if k not in {"id", "deployment_id"}} for row in rows]

    def record_measurement(self, deployment_id: int, phase: str, measurement: dict[str, Any]) -> None:
        """Keep one check measurement with its deployment."""
        value = measurement.get("value")
        with self._write() as conn:
            conn.execute(t.measurements.insert().values(
                deployment_id=deployment_id, phase=phase, check=mask(str(measurement["check"])),
                kind=measurement["kind"], scope=measurement["scope"],
                value=None if value is None else mask(str(value)), condition=measurement.get("condition"),
                verdict=measurement["verdict"], at=measurement["at"],
                detail=mask(measurement["detail"]) if measurement.get("detail") else None))

    def measurements(self, deployment_id: int) -> list[dict[str, Any]]:
        """Every measurement of a deployment, in the order they were taken."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.measurements).where(t.measurements.c.deployment_id == deployment_id)
                                .order_by(t.measurements.c.id)).mappings().all()
        return [{**{k: v for k, v in row.items() if k not in {"id", "deployment_id"}},
                 "value": _number_or_text(row["value"])} for row in rows]

    def deployment(self, deployment_id: int) -> dict[str, Any] | None:
        """One deployment as history shows it, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(t.deployments).where(
                t.deployments.c.app == self.app, t.deployments.c.id == deployment_id)).mappings().first()
        return _deployment(row) if row else None

    def history(self, environment: str | None = None, limit: int = 20, *, status: str | None = None,
                user: str | None = None, region: str | None = None, since: str | None = None,
                before: str | None = None) -> list[dict[str, Any]]:
        """Deployments, newest first; only those with `status`, by `user`, to `region`, or started at or after
        `since` and before `before` (ISO 8601 in UTC, or a day `YYYY-MM-DD`), when given."""
        d = t.deployments
        query = sa.select(d).where(d.c.app == self.app)
        if environment:
            query = query.where(d.c.environment == environment)
        if status:
            query = query.where(d.c.status == status)
        if user:
            query = query.where(d.c.user == user)
        if region:  # regions is a JSON list of names: its text holds the name in quotes
            query = query.where(sa.cast(d.c.regions, sa.Text).contains(json.dumps(region), autoescape=True))
        if since:
            query = query.where(d.c.started_at >= since)
        if before:
            query = query.where(d.c.started_at < before)
        query = query.order_by(t.deployments.c.id.desc()).limit(limit)
        with self._tx() as conn:
            return [_deployment(row) for row in conn.execute(query).mappings().all()]

    def deployments_since(self, since: str, environment: str | None = None) -> list[dict[str, Any]]:
        """Deployments started at or after `since` (ISO 8601 in UTC, as the store writes), oldest first: what
        each was and how it ended (id, environment, regions, release, kind, status, started_at, finished_at,
        user, previous_by_region), not its audit detail, so that a year of them reads quickly."""
        d = t.deployments
        query = sa.select(d.c.id, d.c.environment, d.c.regions, d.c.release, d.c.kind, d.c.status, d.c.started_at,
                          d.c.finished_at, d.c.user, d.c.previous_by_region).where(
            d.c.app == self.app, d.c.started_at >= since)
        if environment:
            query = query.where(d.c.environment == environment)
        with self._tx() as conn:
            rows = conn.execute(query.order_by(d.c.id)).mappings().all()
        return [{**row, "regions": list(row["regions"] or []),
                 "previous_by_region": dict(row["previous_by_region"] or {})} for row in rows]

    def deployments_of(self, release: str, limit: int = 200) -> list[dict[str, Any]]:
        """The deployments that moved regions to (or back to) `release`, newest first."""
        d = t.deployments
        with self._tx() as conn:
            rows = conn.execute(sa.select(d).where(d.c.app == self.app, d.c.release == release)
                                .order_by(d.c.id.desc()).limit(limit)).mappings().all()
        return [_deployment(row) for row in rows]

    def release_before(self, release: str, created_at: str) -> str | None:
        """The release recorded as built last before `release` (created at `created_at`), or None."""
        r = t.releases
        with self._tx() as conn:
            found = conn.execute(sa.select(r.c.id).where(
                r.c.app == self.app, r.c.id != release, sa.or_(r.c.created_at < created_at, sa.and_(
                    r.c.created_at == created_at, r.c.id < release)))
                .order_by(r.c.created_at.desc(), r.c.id.desc()).limit(1)).scalar()
        return None if found is None else str(found)

    def succeeded_in(self, environment: str, release: str) -> bool:
        """Whether `release` was deployed successfully to `environment` at least once."""
        with self._tx() as conn:
            row = conn.execute(sa.select(t.deployments.c.id).where(
                t.deployments.c.app == self.app, t.deployments.c.environment == environment,
                t.deployments.c.release == release, t.deployments.c.kind == "deploy",
                t.deployments.c.status == "succeeded").limit(1)).first()
        return row is not None

    # -- where things run -------------------------------------------------------------------
    def set_host_release(self, environment: str, host: str, region: str, role: str, release: str | None) -> None:
        """Record what a host runs now."""
        self.set_host_releases(environment, [(host, region, role, release)])

    def set_host_releases(self, environment: str, hosts: list[tuple[str, str, str, str | None]],
                          zstd: Mapping[str, bool] | None = None) -> None:
        """Record what several hosts run now, in one transaction: (host, region, role, release) each; and, for
        the hosts `zstd` names, whether they can decompress zstd (the others keep what was known). One upsert
        on the table's key: nothing is read first (a lookup by many hosts scans the environment's rows on
        PostgreSQL, and a deployment writes a group every 200 hosts)."""
        latest = {host: (region, role, release) for host, region, role, release in hosts}
        if not latest:
            return
        now = iso(clock.utcnow())
        hs = t.host_state
        rows = [{"app": self.app, "environment": environment, "host": host, "region": region, "role": role,
                 "release": release, "updated_at": now, "zstd": (zstd or {}).get(host)}
                for host, (region, role, release) in latest.items()]
        with self._write() as conn:
            conn.execute(_upsert(conn, hs, keep_when_null={"zstd"}), rows)

    def hosts_without_zstd(self, environment: str) -> list[str]:
        """The hosts whose last probe said they cannot decompress zstd, by name."""
        hs = t.host_state
        with self._tx() as conn:
            rows = conn.execute(sa.select(hs.c.host).where(hs.c.app == self.app, hs.c.environment == environment,
                                                           hs.c.zstd.is_(False)).order_by(hs.c.host)).all()
        return [row.host for row in rows]

    # -- migrations -------------------------------------------------------------------------
    def record_migration(self, environment: str, region: str, *, name: str, phase: str, cls: str, sha256: str,
                         release: str, deployment_id: int | None) -> None:
        """Remember that a migration was applied in a region (idempotent)."""
        m = t.migrations
        with self._write() as conn:
            conn.execute(m.delete().where(m.c.app == self.app, m.c.environment == environment,
                                          m.c.region == region, m.c.name == name))
            conn.execute(m.insert().values(app=self.app, environment=environment, region=region, name=name,
                                           phase=phase, **{"class": cls}, sha256=sha256, release=release,
                                           deployment_id=deployment_id, applied_at=iso(clock.utcnow())))

    def applied_migrations(self, environment: str) -> dict[str, list[dict[str, Any]]]:
        """region → the migrations Conveyor applied there, in the order they were applied."""
        m = t.migrations
        with self._tx() as conn:
            rows = conn.execute(sa.select(m).where(m.c.app == self.app, m.c.environment == environment)
                                .order_by(m.c.applied_at, m.c.name)).mappings().all()
        out: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            out.setdefault(row["region"], []).append(dict(row))
        return out

    def release_migrations(self, release: str) -> list[dict[str, Any]]:
        """The migrations Conveyor applied while `release` carried them, per environment and region, in order."""
        m = t.migrations
        with self._tx() as conn:
            rows = conn.execute(sa.select(m).where(m.c.app == self.app, m.c.release == release)
                                .order_by(m.c.applied_at, m.c.environment, m.c.region, m.c.name)).mappings().all()
        return [dict(row) for row in rows]

    def forget_hosts(self, environment: str, hosts: list[str]) -> None:
        """Hosts that are gone (scaled in) run nothing any more, on no stack."""
        with self._write() as conn:
            conn.execute(t.host_state.delete().where(
                t.host_state.c.app == self.app, t.host_state.c.environment == environment,
                t.host_state.c.host.in_(hosts)))
            conn.execute(t.host_components.delete().where(
                t.host_components.c.app == self.app, t.host_components.c.environment == environment,
                t.host_components.c.host.in_(hosts)))

    def host_releases(self, environment: str) -> dict[str, str | None]:
        """host name → release, as last recorded."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.host_state.c.host, t.host_state.c.release).where(
                t.host_state.c.app == self.app, t.host_state.c.environment == environment)).all()
        return {row.host: row.release for row in rows}

    def host_states(self, environment: str) -> list[dict[str, Any]]:
        """Every host recorded in `environment`: {host, region, role, release, updated_at}, by region and host."""
        hs = t.host_state
        with self._tx() as conn:
            rows = conn.execute(sa.select(hs.c.host, hs.c.region, hs.c.role, hs.c.release, hs.c.updated_at).where(
                hs.c.app == self.app, hs.c.environment == environment).order_by(hs.c.region, hs.c.host)).mappings()
            return [dict(row) for row in rows]

    def set_pointer(self, environment: str, region: str, release: str, deployment_id: int | None) -> None:
        """Point (environment, region) at a release."""
        now = iso(clock.utcnow())
        with self._write() as conn:
            updated = conn.execute(t.pointers.update().where(
                t.pointers.c.app == self.app, t.pointers.c.environment == environment,
                t.pointers.c.region == region).values(release=release, deployment_id=deployment_id, updated_at=now))
            if updated.rowcount == 0:
                conn.execute(t.pointers.insert().values(app=self.app, environment=environment, region=region,
                                                        release=release, deployment_id=deployment_id,
                                                        updated_at=now))

    def pointers(self, environment: str) -> dict[str, dict[str, Any]]:
        """region → {release, deployment_id, updated_at}."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.pointers).where(
                t.pointers.c.app == self.app, t.pointers.c.environment == environment)).mappings().all()
        return {row["region"]: {"release": row["release"], "deployment_id": row["deployment_id"],
                                "updated_at": row["updated_at"]} for row in rows}

    # -- approvals --------------------------------------------------------------------------
    def request_approval(self, environment: str, release: str, regions: list[str], user: str,
                         expires_in: float, reason: str | None) -> int:
        """Record a request to deploy that someone else must approve; its id."""
        now = clock.utcnow()
        with self._tx() as conn:
            result = conn.execute(t.approvals.insert().values(
                app=self.app, environment=environment, release=release, regions=regions, requested_by=user,
                requested_at=iso(now), expires_at=iso(now + timedelta(seconds=expires_in)),
                reason=mask(reason) if reason else None))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def approval(self, approval_id: int) -> dict[str, Any] | None:
        """One approval request, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(t.approvals).where(
                t.approvals.c.app == self.app, t.approvals.c.id == approval_id)).mappings().first()
        return dict(row) if row else None

    def approve(self, approval_id: int, user: str) -> bool:
        """Mark a request approved by `user`; False when it was approved or denied meanwhile."""
        a = t.approvals
        with self._tx() as conn:
            return conn.execute(a.update().where(a.c.app == self.app, a.c.id == approval_id, a.c.approved_by.is_(None),
                                                 a.c.denied_by.is_(None)).values(
                approved_by=user, approved_at=iso(clock.utcnow()))).rowcount == 1

    def deny(self, approval_id: int, user: str, reason: str) -> bool:
        """Mark a request denied by `user` for `reason` (masked); False when it was approved or denied meanwhile."""
        a = t.approvals
        with self._tx() as conn:
            return conn.execute(a.update().where(a.c.app == self.app, a.c.id == approval_id, a.c.approved_by.is_(None),
                                                 a.c.denied_by.is_(None)).values(
                denied_by=user, denied_at=iso(clock.utcnow()), denial=mask(reason))).rowcount == 1

    def use_approval(self, approval_id: int, deployment_id: int) -> bool:
        """Spend an approval on a deployment; False if it was already spent."""
        with self._write() as conn:
            result = conn.execute(t.approvals.update().where(
                t.approvals.c.id == approval_id, t.approvals.c.used_by.is_(None)).values(used_by=deployment_id))
            return result.rowcount == 1

    def approvals(self, environment: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Approval requests, newest first."""
        query = sa.select(t.approvals).where(t.approvals.c.app == self.app)
        if environment:
            query = query.where(t.approvals.c.environment == environment)
        with self._tx() as conn:
            rows = conn.execute(query.order_by(t.approvals.c.id.desc()).limit(limit)).mappings().all()
        return [dict(row) for row in rows]

    # -- audit ------------------------------------------------------------------------------
    def add_event(self, kind: str, user: str, *, environment: str | None = None,
                  deployment_id: int | None = None, **data: Any) -> None:
        """Append to the audit trail."""
        clean = {k: mask(v) if isinstance(v, str) else v for k, v in data.items()}
        with self._write() as conn:
            conn.execute(t.events.insert().values(app=self.app, at=iso(clock.utcnow()), user=user, kind=kind,
                                                  environment=environment, deployment_id=deployment_id,
                                                  data=clean))

    def last_event(self, kind: str, environment: str) -> dict[str, Any] | None:
        """The newest event of `kind` in `environment`, or None."""
        e = t.events
        with self._tx() as conn:
            row = conn.execute(sa.select(e).where(e.c.app == self.app, e.c.kind == kind, e.c.environment ==
                                                  environment).order_by(e.c.id.desc()).limit(1)).mappings().first()
        return dict(row) if row is not None else None

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The audit trail, newest first."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.events).where(t.events.c.app == self.app)
                                .order_by(t.events.c.id.desc()).limit(limit)).mappings().all()
        return [dict(row) for row in rows]


def _upsert(conn: sa.engine.Connection, table: sa.Table, *, keep_when_null: Collection[str] = ()) -> Any:
    """INSERT … ON CONFLICT (the primary key) DO UPDATE every other column, on SQLite or PostgreSQL; a column in
    `keep_when_null` keeps what the row had when the new value is NULL."""
    statement: Any
    if conn.dialect.name == "postgresql":  # each dialect's module loads only where it is used (~20 ms)
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(table)
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table)
    keys = [column.name for column in table.primary_key.columns]
    updates = {column.name: (sa.func.coalesce(statement.excluded[column.name], column)
                             if column.name in keep_when_null else statement.excluded[column.name])
               for column in table.columns if column.name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=updates)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _number_or_text(value: str | None) -> float | str | None:
    """A measured value as it was taken: numbers come back as numbers (NaN and ±Inf stay text)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _deployment(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "environment": row["environment"], "regions": list(row["regions"] or []),
        "release": row["release"], "previous": row["previous"], "kind": row["kind"], "status": row["status"],
        "started_at": row["started_at"], "finished_at": row["finished_at"], "user": row["user"],
        "failed_hosts": list(row["failed_hosts"] or []), "reason": row["reason"],
        "previous_by_region": dict(row["previous_by_region"] or {}), "summary": row["summary"],
        "overrides": list(row["overrides"] or []), "approval_id": row["approval_id"],
    }
