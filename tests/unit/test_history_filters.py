"""Store.history's filters the dashboard's history page uses (region, days), on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.state import tables as t
from conveyor.state.store import Store


def test_history_filters_by_a_whole_region_name_and_by_start_time(store: Store) -> None:
    made = []
    for regions, started in ((["uk"], "2026-11-30T10:00:00+00:00"), (["uk", "za"], "2026-12-01T10:00:00+00:00"),
                             (["za", "us-east"], "2026-12-02T10:00:00+00:00"), (["us"], "2026-12-03T10:00:00+00:00")):
        key = store.start_deployment(environment="production", regions=regions, release="R", previous_by_region={},
                                     kind="deploy", user="ada")
        with store.engine.begin() as conn:
            conn.execute(sa.update(t.deployments).where(t.deployments.c.id == key).values(started_at=started))
        made.append(key)
    first, second, third, fourth = made

    def ids(**filters: str) -> list[int]:
        return [d["id"] for d in store.history(None, 50, **filters)]

    assert ids(region="za") == [third, second]
    assert ids(region="us") == [fourth]  # not us-east
    assert ids(region="%") == []
    assert ids(since="2026-12-01") == [fourth, third, second]
    assert ids(before="2026-12-02") == [second, first]
    assert ids(since="2026-12-01", before="2026-12-03", region="uk") == [second]
