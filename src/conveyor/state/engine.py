"""Opening a state store's database: the engine for a URL (SQLite tuned for one controller, PostgreSQL for
teams), its tables made or brought up to date, and transactions whose errors become StateError.

Backend errors are translated here, with the URL's password hidden and secrets masked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex

from conveyor.errors import StateError
from conveyor.secrets import mask
from conveyor.state import tables as t

SQLITE_AT_LEAST = (3, 24, 0)  # INSERT … ON CONFLICT DO UPDATE (state/store.py)


def default_url(config_dir: Path) -> str:
    """`sqlite:///<config dir>/.conveyor/state.db`."""
    return f"sqlite:///{config_dir / '.conveyor' / 'state.db'}"


class Database:
    """A state store's database, opened for one app: its engine and its transactions."""

    def __init__(self, url: str, app: str) -> None:
        self.url = url
        self.app = app
        self.engine = _engine(url)
        try:
            t.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
            _add_missing_indexes(self.engine)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot open the state store {mask(_safe_url(url))}: {_reason(exc)}") from exc

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StateError(f"state store error: {_reason(exc)}") from exc


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


def _add_missing_indexes(engine: Engine) -> None:
    """Bring a store made by an older Conveyor up to date: new indexes are made (create_all makes a table's
    indexes only with the table). IF NOT EXISTS, so that two commands opening an old store at once both go on."""
    present = {(table[1], index["name"]) for table, indexes in sa.inspect(engine).get_multi_indexes().items()
               for index in indexes}
    for table in t.metadata.sorted_tables:
        for index in table.indexes:
            if (table.name, index.name) not in present:
                with engine.begin() as conn:
                    conn.execute(CreateIndex(index, if_not_exists=True))


def _engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite:///"):
            if sqlite3.sqlite_version_info < SQLITE_AT_LEAST:
                raise StateError(f"the state store needs SQLite {'.'.join(map(str, SQLITE_AT_LEAST))} or newer (its "
                                 f"upserts); this Python's sqlite3 has {sqlite3.sqlite_version}: use a Python built "
                                 "with a newer SQLite, or PostgreSQL (`state:` or CONVEYOR_STATE_URL)")
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
