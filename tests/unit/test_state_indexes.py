"""The history reads find their rows through an index, also in a store made before the index existed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.state import tables as t
from conveyor.state.store import Store

NEW = ("ix_deployments_app_status", "ix_deployments_app_started", "ix_deployments_app_id", "ix_deployments_app_release")


def _indexes(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {index["name"] for index in sa.inspect(engine).get_indexes("deployments")}
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    found: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(found)
    t.metadata.drop_all(engine)  # each test starts from an empty store
    engine.dispose()
    return found


def test_a_store_made_before_the_history_indexes_gets_them_when_opened(url: str) -> None:
    store = Store(url, "www")
    kept = store.start_deployment(environment="production", regions=["uk"], release="R1", previous_by_region={},
                                  kind="deploy", user="ann")
    store.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as an older Conveyor left it
        for name in NEW:
            conn.exec_driver_sql(f"DROP INDEX {name}")
    engine.dispose()
    assert not set(NEW) & _indexes(url)

    store = Store(url, "www")
    Store(url, "www").close()  # a second opening finds them made
    assert set(NEW) <= _indexes(url)
    assert [d["id"] for d in store.history()] == [kept]
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}", "www")
    yield store
    store.close()


def _plans(store: Store, read: Callable[[], Any]) -> list[str]:
    """SQLite's plan for every SELECT of deployments that `read` makes."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM deployments" in statement:
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        read()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    assert seen, "the read made no query of deployments"
    raw = store.engine.raw_connection()
    try:
        return [" / ".join(row[3] for row in raw.cursor().execute(f"EXPLAIN QUERY PLAN {statement}", parameters))
                for statement, parameters in seen]
    finally:
        raw.close()


@pytest.mark.parametrize(("read", "index"), [
    (lambda s: s.reap(), "ix_deployments_app_status"),
    (lambda s: s.history(None, 20, status="interrupted"), "ix_deployments_app_status"),
    (lambda s: s.deployments_since("2026-01-01T00:00:00+00:00"), "ix_deployments_app_started"),
    (lambda s: s.history(), "ix_deployments_app_id"),
])
def test_history_reads_search_an_index_rather_than_read_every_deployment(
        sqlite_store: Store, read: Callable[[Store], Any], index: str) -> None:
    for plan in _plans(sqlite_store, lambda: read(sqlite_store)):
        assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
