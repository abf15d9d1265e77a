"""The state store: releases, deployments, host results, pointers, locks and the audit trail.

SQLite by default (one file beside the config), PostgreSQL for teams; SQLAlchemy Core underneath.
"""

from __future__ import annotations

import copy
import math
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import CompileError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from conveyor.errors import LockHeld, LockLost, StateError
from conveyor.secrets import mask
from conveyor.state import tables as t
from conveyor.state.liveness import pid_start_time, process_alive


def utcnow() -> datetime:
    """The real time (leases and records never use an injected clock)."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with an explicit offset, to the second."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class DatabaseTime(FunctionElement[str]):
    """The database's clock `seconds` from now, as ISO 8601 text in UTC to the second (the form `iso` writes).

    Leases are written and judged with it, in the SQL itself: every controller sharing a store shares its
    clock, whatever their own clocks say. Text of one form in UTC compares in time order.
    """

    type = sa.String()
    inherit_cache = True
    name = "database_time"

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__(sa.literal(float(seconds), sa.Float()))


@compiles(DatabaseTime, "sqlite")
def _sqlite_time(element: DatabaseTime, compiler: SQLCompiler, **kw: Any) -> str:
    offset = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%dT%H:%M:%S+00:00', julianday('now') + ({offset}) / 86400.0)"


@compiles(DatabaseTime, "postgresql")
def _postgresql_time(element: DatabaseTime, compiler: SQLCompiler, **kw: Any) -> str:
    offset = compiler.process(element.clauses, **kw)
    return (f"to_char((CURRENT_TIMESTAMP AT TIME ZONE 'UTC') + ({offset}) * interval '1 second', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')")


@compiles(DatabaseTime)
def _other_time(element: DatabaseTime, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(f"the state store runs on SQLite or PostgreSQL, not {compiler.dialect.name}")


def default_url(config_dir: Path) -> str:
    """`sqlite:///<config dir>/.conveyor/state.db`."""
    return f"sqlite:///{config_dir / '.conveyor' / 'state.db'}"


@dataclass(frozen=True)
class LockInfo:
    """Who holds an environment, since when, and until when unless renewed."""

    environment: str
    owner: str
    machine: str
    pid: int | None
    reason: str | None
    deployment_id: int | None
    acquired_at: str
    heartbeat_at: str
    expires_at: str | None
    generation: int | None = None

    def describe(self) -> str:
        """One sentence naming the holder."""
        what = f"deployment #{self.deployment_id}" if self.deployment_id else "a manual lock"
        why = f" ({self.reason})" if self.reason else ""
        pid = f" pid {self.pid}" if self.pid else ""
        return (f"{self.environment} is locked by {self.owner} on {self.machine}{pid}, {what}{why}, "
                f"since {self.acquired_at}")


@dataclass(frozen=True)
class Lease:
    """Our hold on an environment's lock. `generation` is the fencing token: a store `under` this lease
    refuses every write once the lock carries another one. `previous` is the dead holder we took it over
    from (its deployment is marked interrupted), if any."""

    environment: str
    generation: int
    previous: LockInfo | None = None


class Store:
    """All reads and writes of deployment state for one app."""

    def __init__(self, url: str, app: str) -> None:
        self.url = url
        self.app = app
        self.lease: Lease | None = None  # set on the copy `under` makes
        self.engine = _engine(url)
        try:
            t.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot open the state store {mask(_safe_url(url))}: {_reason(exc)}") from exc

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def under(self, lease: Lease) -> Store:
        """This store as the deployment holding `lease` writes to it: every write first checks, in its own
        transaction, that the environment's lock still carries the lease's generation, and raises LockLost
        (writing nothing) when it does not. Shares this store's connections: close this store, not the copy."""
        fenced = copy.copy(self)
        fenced.lease = lease
        return fenced

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StateError(f"state store error: {_reason(exc)}") from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction that writes; under a lease, only while the lock is still ours (it stays locked,
        FOR UPDATE, until the write commits, so a takeover waits for it)."""
        with self._tx() as conn:
            if self.lease is not None:
                row = conn.execute(sa.select(t.locks.c.generation).where(
                    t.locks.c.app == self.app, t.locks.c.environment == self.lease.environment,
                ).with_for_update()).first()
                if row is None or row.generation != self.lease.generation:
                    raise _lost(conn, self.app, self.lease)
            yield conn

    def check_lease(self) -> None:
        """Raise LockLost unless the lock is still ours (nothing to check without a lease)."""
        with self._write():
            pass

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
                previous_by_region=previous_by_region, kind=kind, status=status, started_at=iso(utcnow()),
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
                finished_at=iso(utcnow()), failed_hosts=failed_hosts, summary=mask(summary) if summary else None))

    def record_host_result(self, deployment_id: int, result: dict[str, Any]) -> None:
        """Keep one host's outcome with its deployment (replacing an earlier one for that host)."""
        self.record_host_results(deployment_id, [result])

    def record_host_results(self, deployment_id: int, results: list[dict[str, Any]]) -> None:
        """Keep several hosts' outcomes in one transaction; a host's later outcome replaces its earlier one."""
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
            for chunk in _chunks(list(latest), 500):
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

    def history(self, environment: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Deployments, newest first."""
        query = sa.select(t.deployments).where(t.deployments.c.app == self.app)
        if environment:
            query = query.where(t.deployments.c.environment == environment)
        query = query.order_by(t.deployments.c.id.desc()).limit(limit)
        with self._tx() as conn:
            return [_deployment(row) for row in conn.execute(query).mappings().all()]

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

    def set_host_releases(self, environment: str, hosts: list[tuple[str, str, str, str | None]]) -> None:
        """Record what several hosts run now, in one transaction: (host, region, role, release) each."""
        latest = {host: (region, role, release) for host, region, role, release in hosts}
        if not latest:
            return
        now = iso(utcnow())
        rows = [{"app": self.app, "environment": environment, "host": host, "region": region, "role": role,
                 "release": release, "updated_at": now} for host, (region, role, release) in latest.items()]
        with self._write() as conn:
            for chunk in _chunks(list(latest), 500):
                conn.execute(t.host_state.delete().where(
                    t.host_state.c.app == self.app, t.host_state.c.environment == environment,
                    t.host_state.c.host.in_(chunk)))
            conn.execute(t.host_state.insert(), rows)

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
                                           deployment_id=deployment_id, applied_at=iso(utcnow())))

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

    def forget_hosts(self, environment: str, hosts: list[str]) -> None:
        """Hosts that are gone (scaled in) run nothing any more."""
        with self._write() as conn:
            conn.execute(t.host_state.delete().where(
                t.host_state.c.app == self.app, t.host_state.c.environment == environment,
                t.host_state.c.host.in_(hosts)))

    def host_releases(self, environment: str) -> dict[str, str | None]:
        """host name → release, as last recorded."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.host_state.c.host, t.host_state.c.release).where(
                t.host_state.c.app == self.app, t.host_state.c.environment == environment)).all()
        return {row.host: row.release for row in rows}

    def set_pointer(self, environment: str, region: str, release: str, deployment_id: int | None) -> None:
        """Point (environment, region) at a release."""
        now = iso(utcnow())
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
        now = utcnow()
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

    def approve(self, approval_id: int, user: str) -> None:
        """Mark a request approved by `user`."""
        with self._tx() as conn:
            conn.execute(t.approvals.update().where(t.approvals.c.id == approval_id).values(
                approved_by=user, approved_at=iso(utcnow())))

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
            conn.execute(t.events.insert().values(app=self.app, at=iso(utcnow()), user=user, kind=kind,
                                                  environment=environment, deployment_id=deployment_id,
                                                  data=clean))

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The audit trail, newest first."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.events).where(t.events.c.app == self.app)
                                .order_by(t.events.c.id.desc()).limit(limit)).mappings().all()
        return [dict(row) for row in rows]

    # -- locks ------------------------------------------------------------------------------
    def lock(self, environment: str, *, owner: str, reason: str | None, deployment_id: int | None = None,
             lease: float | None = None, pid: int | None = None) -> Lease:
        """Take the environment's lock, or raise LockHeld naming its live holder; our Lease.

        A holder that is dead (on this machine: its process is gone; elsewhere: its lease expired by the
        database's clock) is taken over at once; its deployment is marked interrupted and named in the lease.
        Every taking gets a larger generation than any before it, its fencing token.
        """
        machine = socket.gethostname()
        for _attempt in range(3):
            try:
                with self._tx() as conn:
                    # FOR UPDATE on PostgreSQL (SQLite takes its write lock at BEGIN IMMEDIATE): two takers of
                    # a dead holder's lock must not both win.
                    current = conn.execute(_lock_query(self.app, environment).with_for_update()).mappings().first()
                    if current is not None and not _holder_dead(current, machine):
                        info = _lock_info(current)
                        raise LockHeld(info.describe(), holder=_lock_json(info))
                    now = DatabaseTime()
                    generation = _grant(conn, self.app, environment, current, owner=owner, machine=machine,
                                        pid=pid, reason=reason, deployment_id=deployment_id, now=now)
                    row = {
                        "owner": owner, "machine": machine, "pid": pid,
                        "pid_start": pid_start_time(pid) if pid else None, "reason": reason,
                        "deployment_id": deployment_id, "acquired_at": now, "heartbeat_at": now,
                        "expires_at": DatabaseTime(lease) if lease else None, "generation": generation,
                    }
                    if current is None:
                        conn.execute(t.locks.insert().values(app=self.app, environment=environment, **row))
                        return Lease(environment, generation)
                    conn.execute(t.locks.update().where(
                        t.locks.c.app == self.app, t.locks.c.environment == environment).values(**row))
                    previous = _lock_info(current)
                    if previous.deployment_id:
                        _mark_interrupted(conn, previous.deployment_id)
                    return Lease(environment, generation, previous)
            except StateError as exc:
                if isinstance(exc.__cause__, IntegrityError):
                    continue  # someone inserted between our read and write: read again
                raise
        raise StateError(f"could not take the lock on {environment}: too much contention")

    def set_lock_deployment(self, lease: Lease, deployment_id: int) -> None:
        """Tie our lock to the deployment it protects (LockLost if it is not ours any more)."""
        g = t.lock_grants
        with self._tx() as conn:
            _renew(conn, self.app, lease, {"deployment_id": deployment_id})
            conn.execute(g.update().where(g.c.app == self.app, g.c.environment == lease.environment,
                                          g.c.generation == lease.generation).values(deployment_id=deployment_id))

    def renew(self, lease: Lease, seconds: float) -> None:
        """Extend our lease to `seconds` from now by the database's clock; raise LockLost, naming who took the
        lock, when it is not ours any more."""
        with self._tx() as conn:
            _renew(conn, self.app, lease, {"expires_at": DatabaseTime(seconds)})

    def release(self, lease: Lease) -> bool:
        """Let our lock go; False when it was not ours any more (someone took it over: theirs stays)."""
        with self._tx() as conn:
            result = conn.execute(t.locks.delete().where(
                t.locks.c.app == self.app, t.locks.c.environment == lease.environment,
                t.locks.c.generation == lease.generation))
            return result.rowcount == 1

    def unlock(self, environment: str) -> LockInfo | None:
        """Remove the environment's lock, whoever holds it; return what it was (None if there was none)."""
        with self._tx() as conn:
            current = conn.execute(_lock_query(self.app, environment)).mappings().first()
            if current is None:
                return None
            conn.execute(t.locks.delete().where(t.locks.c.app == self.app, t.locks.c.environment == environment))
            return _lock_info(current)

    def lock_holder(self, environment: str) -> LockInfo | None:
        """The live holder of an environment's lock, if any."""
        with self._tx() as conn:
            row = conn.execute(_lock_query(self.app, environment)).mappings().first()
        if row is None or _holder_dead(row, socket.gethostname()):
            return None
        return _lock_info(row)

    def reap(self) -> list[int]:
        """Release locks of dead holders and mark their deployments interrupted; return those ids.

        Also marks `running` deployments that no lock protects any more (their holder died and the lock
        was removed by hand) as interrupted.
        """
        machine = socket.gethostname()
        interrupted: list[int] = []
        with self._tx() as conn:
            for row in conn.execute(_lock_query(self.app, None)).mappings().all():
                if _holder_dead(row, machine):
                    conn.execute(t.locks.delete().where(t.locks.c.app == self.app,
                                                        t.locks.c.environment == row["environment"],
                                                        t.locks.c.generation.is_not_distinct_from(
                                                            row["generation"])))
                    if row["deployment_id"] and _mark_interrupted(conn, row["deployment_id"]):
                        interrupted.append(row["deployment_id"])
            protected = {row.deployment_id for row in conn.execute(
                sa.select(t.locks.c.deployment_id).where(t.locks.c.app == self.app)).all()}
            running = conn.execute(sa.select(t.deployments.c.id).where(
                t.deployments.c.app == self.app, t.deployments.c.status == "running")).scalars().all()
            for deployment_id in running:
                if deployment_id not in protected and _mark_interrupted(conn, deployment_id):
                    interrupted.append(deployment_id)
        return interrupted


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


def _add_missing_columns(engine: Engine) -> None:
    """Bring a store made by an older Conveyor up to date: new columns are added, nothing is dropped."""
    inspector = sa.inspect(engine)
    for table in t.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')


def _mark_interrupted(conn: Connection, deployment_id: int) -> bool:
    result = conn.execute(t.deployments.update().where(
        t.deployments.c.id == deployment_id, t.deployments.c.status == "running").values(
        status="interrupted", finished_at=iso(utcnow())))
    return result.rowcount == 1


def _lock_query(app: str, environment: str | None) -> sa.Select[Any]:
    """The lock rows of an app (or one environment), each with `lease_over`: whether its lease has expired by
    the database's clock (null when it has none)."""
    query = sa.select(t.locks, (t.locks.c.expires_at < DatabaseTime()).label("lease_over")).where(
        t.locks.c.app == app)
    return query if environment is None else query.where(t.locks.c.environment == environment)


def _holder_dead(row: Any, machine: str) -> bool:
    if row["pid"] is None:
        return False  # a manual lock lasts until someone unlocks it
    if row["machine"] == machine:
        return not process_alive(row["pid"], row["pid_start"])
    return bool(row["lease_over"])


def _grant(conn: Connection, app: str, environment: str, current: Any, *, owner: str, machine: str,
           pid: int | None, reason: str | None, deployment_id: int | None, now: DatabaseTime) -> int:
    """Record a taking of an environment's lock; its generation, larger than any before (a lock row made by
    an older Conveyor carries none). Two takers racing for the same number: one fails, and reads again."""
    g = t.lock_grants
    last = conn.execute(sa.select(sa.func.max(g.c.generation)).where(
        g.c.app == app, g.c.environment == environment)).scalar()
    held = current["generation"] if current is not None and current["generation"] is not None else 0
    generation = int(max(last or 0, held)) + 1
    conn.execute(g.insert().values(app=app, environment=environment, generation=generation, owner=owner,
                                   machine=machine, pid=pid, reason=reason, deployment_id=deployment_id,
                                   taken_at=now))
    return generation


def _renew(conn: Connection, app: str, lease: Lease, values: dict[str, Any]) -> None:
    result = conn.execute(t.locks.update().where(
        t.locks.c.app == app, t.locks.c.environment == lease.environment,
        t.locks.c.generation == lease.generation).values(heartbeat_at=DatabaseTime(), **values))
    if result.rowcount != 1:
        raise _lost(conn, app, lease)


def _lost(conn: Connection, app: str, lease: Lease) -> LockLost:
    """The error of a deployment whose lock is not its own any more, naming who took it."""
    g = t.lock_grants
    taker = conn.execute(sa.select(g).where(
        g.c.app == app, g.c.environment == lease.environment, g.c.generation > lease.generation,
    ).order_by(g.c.generation).limit(1)).mappings().first()
    if taker is None:
        return LockLost(f"lost the lock on {lease.environment}: it was removed by hand (`conveyor unlock --force`)")
    holder = conn.execute(sa.select(t.locks.c.generation).where(
        t.locks.c.app == app, t.locks.c.environment == lease.environment)).scalar()
    pid = f" pid {taker['pid']}" if taker["pid"] else ""
    what = (f" for deployment #{taker['deployment_id']}" if taker["deployment_id"]
            else " for a deployment" if taker["pid"] else " as a manual lock")
    why = f" ({taker['reason']})" if taker["reason"] else ""
    since = "" if holder == taker["generation"] else "; it has let it go since"
    return LockLost(f"lost the lock on {lease.environment}: {taker['owner']} on {taker['machine']}{pid} took it "
                    f"over{what}{why} at {taker['taken_at']}{since}")


def _lock_info(row: Any) -> LockInfo:
    return LockInfo(environment=row["environment"], owner=row["owner"], machine=row["machine"], pid=row["pid"],
                    reason=row["reason"], deployment_id=row["deployment_id"], acquired_at=row["acquired_at"],
                    heartbeat_at=row["heartbeat_at"], expires_at=row["expires_at"], generation=row["generation"])


def _lock_json(info: LockInfo) -> dict[str, Any]:
    return {"environment": info.environment, "owner": info.owner, "machine": info.machine, "pid": info.pid,
            "reason": info.reason, "deployment_id": info.deployment_id, "since": info.acquired_at,
            "expires_at": info.expires_at}


def lock_json(info: LockInfo) -> dict[str, Any]:
    """A lock as JSON."""
    return _lock_json(info)


def _deployment(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "environment": row["environment"], "regions": list(row["regions"] or []),
        "release": row["release"], "previous": row["previous"], "kind": row["kind"], "status": row["status"],
        "started_at": row["started_at"], "finished_at": row["finished_at"], "user": row["user"],
        "failed_hosts": list(row["failed_hosts"] or []), "reason": row["reason"],
        "previous_by_region": dict(row["previous_by_region"] or {}), "summary": row["summary"],
        "overrides": list(row["overrides"] or []), "approval_id": row["approval_id"],
    }


def _engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})

            @sa.event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
                # In WAL mode NORMAL loses nothing on a crashed controller (only on a power cut), and does
                # not fsync every host result while the event loop waits.
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")
                dbapi_connection.execute("PRAGMA busy_timeout=30000")

            @sa.event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                # Take the write lock up front: lock acquisition reads then writes, and must not race.
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:
        raise StateError(f"cannot use the state store {mask(_safe_url(url))}: {_reason(exc)}") from exc


def _safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return mask(text)
