"""Environment locks and the leases they grant: one deployment at a time per environment.

A lock names its holder; a holder that died (its process gone on this machine, its lease expired by the
database's clock elsewhere) is taken over, and its deployment marked interrupted. Each taking carries a
larger generation, the fencing token: a store `under` a lease writes nothing once the lock carries another.
"""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from conveyor.errors import LockHeld, LockLost, StateError
from conveyor.state import clock
from conveyor.state import tables as t
from conveyor.state.clock import DatabaseTime, iso
from conveyor.state.engine import Database
from conveyor.state.liveness import pid_start_time, process_alive


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


class Locking(Database):
    """The lock half of `Store`: taking, renewing and releasing environment locks, and writing under a lease."""

    def __init__(self, url: str, app: str) -> None:
        super().__init__(url, app)
        self.lease: Lease | None = None  # set on the copy `under` makes
        self._batch: tuple[int, Connection] | None = None  # (thread, transaction) while `batch` runs

    def under(self, lease: Lease) -> Self:
        """This store as the deployment holding `lease` writes to it: every write first checks, in its own
        transaction, that the environment's lock still carries the lease's generation, and raises LockLost
        (writing nothing) when it does not. Shares this store's connections: close this store, not the copy."""
        fenced = copy.copy(self)
        fenced.lease = lease
        return fenced

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes this thread makes inside share one transaction and one lease check: all or nothing.
        (A remote database pays a round trip per transaction; a deployment's recorder writes several
        tables for each group of hosts.) Other threads, the lease's heartbeat among them, are not affected."""
        if self._batch is not None and self._batch[0] == threading.get_ident():
            yield  # already inside one
            return
        with self._write() as conn:
            self._batch = (threading.get_ident(), conn)
            try:
                yield
            finally:
                self._batch = None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction that writes; under a lease, only while the lock is still ours (it stays locked,
        FOR UPDATE, until the write commits, so a takeover waits for it). Inside `batch`, its transaction."""
        if self._batch is not None and self._batch[0] == threading.get_ident():
            yield self._batch[1]
            return
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


def _mark_interrupted(conn: Connection, deployment_id: int) -> bool:
    result = conn.execute(t.deployments.update().where(
        t.deployments.c.id == deployment_id, t.deployments.c.status == "running").values(
        status="interrupted", finished_at=iso(clock.utcnow())))
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
