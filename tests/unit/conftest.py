"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.state import tables as t
from conveyor.state.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty state store of app `www`, on SQLite (the default) and on a real PostgreSQL server (for teams).
    A module with a `store` fixture of its own uses that instead."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        t.metadata.drop_all(engine)  # each test starts from an empty store
        engine.dispose()
    made = Store(url, "www")
    yield made
    made.close()
