"""The store's two clocks: this machine's, for the times records carry, and the database's, for leases.

The store's modules read this machine's time as `clock.utcnow()`, through this module, so that a test can
move it in one place (and show that no lease is judged by it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


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
