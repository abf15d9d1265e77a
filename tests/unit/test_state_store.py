"""The state store: deployments, history, pointers, and locks with leases."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.errors import LockHeld, LockLost, StateError
from conveyor.state import clock
from conveyor.state import tables as t
from conveyor.state.liveness import pid_start_time, process_alive
from conveyor.state.store import DatabaseTime, Store, iso, utcnow


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_history_is_newest_first_and_has_the_contract_fields(store: Store) -> None:
    first = store.start_deployment(environment="staging", regions=["uk"], release="R1", previous_by_region={},
                                   kind="deploy", user="ann")
    store.finish_deployment(first, "succeeded", [])
    second = store.start_deployment(environment="production", regions=["za", "uk"], release="R1",
                                    previous_by_region={"za": "R0", "uk": "R0"}, kind="deploy", user="bob")
    store.finish_deployment(second, "rolled_back", ["za-web-2"])
    history = store.history()
    assert [d["id"] for d in history] == [second, first]
    newest = history[0]
    for key in ("id", "environment", "regions", "release", "previous", "kind", "status", "started_at",
                "finished_at", "user", "failed_hosts"):
        assert key in newest
    assert newest["previous"] == "R0"
    assert newest["failed_hosts"] == ["za-web-2"]
    assert newest["status"] == "rolled_back"
    assert [d["id"] for d in store.history("staging")] == [first]


def test_promotion_needs_a_succeeded_deploy_of_that_release(store: Store) -> None:
    failed = store.start_deployment(environment="staging", regions=["uk"], release="R1", previous_by_region={},
                                    kind="deploy", user="ann")
    store.finish_deployment(failed, "rolled_back", ["w1"])
    assert not store.succeeded_in("staging", "R1")
    ok = store.start_deployment(environment="staging", regions=["uk"], release="R1", previous_by_region={},
                                kind="deploy", user="ann")
    store.finish_deployment(ok, "succeeded", [])
    assert store.succeeded_in("staging", "R1")
    assert not store.succeeded_in("staging", "R2")
    assert not store.succeeded_in("production", "R1")


def test_apps_sharing_a_store_do_not_see_each_others_deployments(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    www, tools = Store(url, "www"), Store(url, "tools")
    www.start_deployment(environment="production", regions=["za"], release="R1", previous_by_region={},
                         kind="deploy", user="ann")
    assert tools.history() == []
    assert len(www.history()) == 1
    www.lock("production", owner="ann", reason="hold")
    tools.lock("production", owner="bob", reason="independent")  # a different app's lock
    www.close()
    tools.close()


def test_pointers_and_host_state_are_updated_in_place(store: Store) -> None:
    store.set_pointer("production", "za", "R1", 1)
    store.set_pointer("production", "za", "R2", 2)
    assert store.pointers("production")["za"]["release"] == "R2"
    store.set_host_release("production", "za-web-1", "za", "web", "R1")
    store.set_host_release("production", "za-web-1", "za", "web", "R2")
    assert store.host_releases("production") == {"za-web-1": "R2"}


def test_a_second_lock_is_refused_naming_the_holder_and_reason(store: Store) -> None:
    store.lock("production", owner="carol", reason="month end")
    with pytest.raises(LockHeld) as held:
        store.lock("production", owner="dave", reason="deploy R2", lease=60, pid=os.getpid())
    assert "carol" in held.value.message
    assert "month end" in held.value.message
    assert held.value.exit_code == 3


def test_a_manual_lock_lasts_until_unlocked(store: Store) -> None:
    store.lock("production", owner="carol", reason="freeze")
    assert store.lock_holder("production") is not None
    assert store.reap() == []
    released = store.unlock("production")
    assert released is not None
    assert released.owner == "carol"
    assert store.lock_holder("production") is None


def test_a_dead_holder_on_this_machine_is_taken_over_at_once_and_its_deployment_interrupted(store: Store) -> None:
    dead = _dead_pid()
    deployment = store.start_deployment(environment="production", regions=["za"], release="R1",
                                        previous_by_region={}, kind="deploy", user="ann")
    with store.engine.begin() as conn:
        conn.execute(t.locks.insert().values(
            app="www", environment="production", owner="ann", machine=socket.gethostname(), pid=dead,
            pid_start=None, reason="deploy", deployment_id=deployment, acquired_at=iso(utcnow()),
            heartbeat_at=iso(utcnow()), expires_at=iso(utcnow() + timedelta(hours=1))))
    assert store.lock_holder("production") is None  # dead, whatever its lease says
    takeover = store.lock("production", owner="bob", reason="deploy R2", lease=60, pid=os.getpid())
    assert takeover.previous is not None
    assert takeover.previous.deployment_id == deployment
    record = store.deployment(deployment)
    assert record is not None
    assert record["status"] == "interrupted"


def hold_elsewhere(store: Store, seconds: float, machine: str = "runner-7.example") -> None:
    """Make the production lock a live deployment's on another machine, its lease ending `seconds` from now
    by the database's clock (in its past when negative)."""
    with store.engine.begin() as conn:
        conn.execute(t.locks.delete())
        conn.execute(t.locks.insert().values(
            app="www", environment="production", owner="ci", machine=machine, pid=4242, pid_start=None,
            reason="deploy", deployment_id=None, acquired_at=iso(utcnow()), heartbeat_at=iso(utcnow()),
            expires_at=DatabaseTime(seconds)))


def test_a_holder_elsewhere_is_taken_over_only_when_its_lease_expires(store: Store) -> None:
    hold_elsewhere(store, 300)
    with pytest.raises(LockHeld, match=r"runner-7\.example"):
        store.lock("production", owner="bob", reason="deploy", lease=60, pid=os.getpid())
    hold_elsewhere(store, -1)
    assert store.lock("production", owner="bob", reason="deploy", lease=60, pid=os.getpid()).previous is not None


def test_a_lease_is_judged_by_the_databases_clock_not_this_machines(store: Store,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # This controller's clock runs a day ahead: by it, every lease elsewhere would have expired long ago.
    ahead = utcnow() + timedelta(days=1)
    monkeypatch.setattr(clock, "utcnow", lambda: ahead)
    hold_elsewhere(store, 300)
    assert store.lock_holder("production") is not None
    assert store.reap() == []
    with pytest.raises(LockHeld, match=r"runner-7\.example"):
        store.lock("production", owner="bob", reason="deploy", lease=60, pid=os.getpid())
    # ... and one running a day behind takes over a lease that expired by the database's clock.
    monkeypatch.setattr(clock, "utcnow", lambda: ahead - timedelta(days=2))
    hold_elsewhere(store, -1)
    assert store.lock_holder("production") is None
    assert store.lock("production", owner="bob", reason="deploy", lease=60, pid=os.getpid()).previous is not None


def test_renewing_extends_only_our_own_lease_by_the_databases_clock(store: Store) -> None:
    lease = store.lock("production", owner="bob", reason="deploy", lease=30, pid=os.getpid())
    before = store.lock_holder("production")
    assert before is not None
    assert before.expires_at is not None
    store.renew(lease, 300)
    after = store.lock_holder("production")
    assert after is not None
    assert after.expires_at is not None
    assert after.expires_at > before.expires_at
    with store.engine.connect() as conn:
        now = conn.execute(sa.select(DatabaseTime())).scalar_one()
    assert after.expires_at > now
    with pytest.raises(LockLost):
        store.renew(dataclasses.replace(lease, environment="staging"), 300)


def test_each_taking_of_a_lock_has_a_larger_generation_even_after_it_was_removed(store: Store) -> None:
    seen = []
    for _ in range(3):
        lease = store.lock("production", owner="bob", reason="deploy", lease=60, pid=os.getpid())
        seen.append(lease.generation)
        assert store.release(lease)
    manual = store.lock("production", owner="carol", reason="freeze")
    seen.append(manual.generation)
    store.unlock("production")
    seen.append(store.lock("production", owner="bob", reason="deploy", lease=60, pid=os.getpid()).generation)
    assert seen == sorted(set(seen)), seen
    assert store.lock("staging", owner="bob", reason="deploy").generation == 1  # one count per environment


def second_controller(store: Store) -> Store:
    """Another controller on the same state store: its own engine, its own connections."""
    return Store(store.url, "www")


def test_a_deployment_whose_lease_was_taken_over_writes_nothing_more_and_stays_interrupted(store: Store) -> None:
    # Controller A deploys; its lock is made to look like an expired lease on another machine, and
    # controller B takes it over.
    lease_a = store.lock("production", owner="ann", reason="deploy R2", lease=90, pid=os.getpid())
    a = store.under(lease_a)
    first = a.start_deployment(environment="production", regions=["za"], release="R2", previous_by_region={},
                               kind="deploy", user="ann")
    store.set_lock_deployment(lease_a, first)
    a.set_pointer("production", "za", "R2", first)
    hold = t.locks.update().where(t.locks.c.environment == "production").values(
        machine="runner-a.elsewhere", expires_at=DatabaseTime(-1))
    with store.engine.begin() as conn:
        conn.execute(hold)
    other = second_controller(store)
    try:
        lease_b = other.lock("production", owner="bob", reason="deploy R3", lease=90, pid=os.getpid())
        assert lease_b.generation > lease_a.generation
        assert lease_b.previous is not None
        assert lease_b.previous.deployment_id == first
        b = other.under(lease_b)
        second = b.start_deployment(environment="production", regions=["za"], release="R3",
                                    previous_by_region={}, kind="deploy", user="bob")
        other.set_lock_deployment(lease_b, second)
        b.set_pointer("production", "za", "R3", second)
        b.set_host_release("production", "za-web-1", "za", "web", "R3")

        # Every write A makes now is refused, names who took over, and changes nothing.
        writes = [
            lambda: a.set_pointer("production", "za", "R2", first),
            lambda: a.set_host_release("production", "za-web-1", "za", "web", "R2"),
            lambda: a.record_host_results(first, [{"host": "za-web-1", "region": "za", "role": "web",
                                                   "status": "succeeded", "release": "R2"}]),
            lambda: a.forget_hosts("production", ["za-web-1"]),
            lambda: a.add_event("deploy_started", "ann", environment="production", deployment_id=first),
            a.check_lease,
            lambda: store.renew(lease_a, 90),
            lambda: store.set_lock_deployment(lease_a, first),
        ]
        for write in writes:
            with pytest.raises(LockLost, match=rf"bob on {socket.gethostname()} pid {os.getpid()} took it over "
                                               rf"for deployment #{second}"):
                write()
        assert other.pointers("production")["za"]["release"] == "R3"
        assert other.host_releases("production") == {"za-web-1": "R3"}
        assert store.host_results(first) == []
        # A's own end is recorded, and never overwrites `interrupted`; its lock release leaves B's lock alone.
        store.finish_deployment(first, "succeeded", [], summary="lost the lock")
        record = other.deployment(first)
        assert record is not None
        assert (record["status"], record["summary"]) == ("interrupted", "lost the lock")
        assert not store.release(lease_a)
        holder = other.lock_holder("production")
        assert holder is not None
        assert (holder.owner, holder.deployment_id, holder.generation) == ("bob", second, lease_b.generation)
        other.finish_deployment(second, "succeeded", [])
        assert other.release(lease_b)
    finally:
        other.close()


def test_a_lock_removed_by_hand_fences_out_its_deployment(store: Store) -> None:
    lease = store.lock("production", owner="ann", reason="deploy", lease=90, pid=os.getpid())
    store.unlock("production")
    with pytest.raises(LockLost, match="removed"):
        store.under(lease).set_pointer("production", "za", "R2", None)
    again = store.lock("production", owner="ann", reason="deploy", lease=90, pid=os.getpid())
    with pytest.raises(LockLost):
        store.under(lease).check_lease()  # the same holder taking it again is a new generation
    store.under(again).check_lease()


def test_running_deployments_without_a_live_lock_are_reaped_as_interrupted(store: Store) -> None:
    orphan = store.start_deployment(environment="production", regions=["za"], release="R1",
                                    previous_by_region={}, kind="deploy", user="ann")
    assert store.reap() == [orphan]
    record = store.deployment(orphan)
    assert record is not None
    assert record["status"] == "interrupted"
    assert store.reap() == []


def test_one_result_row_per_host_and_secrets_are_masked(store: Store) -> None:
    from conveyor.secrets import register_secret

    register_secret("hunter2-token")
    deployment = store.start_deployment(environment="production", regions=["za"], release="R1",
                                        previous_by_region={}, kind="deploy", user="ann")
    row = {"host": "za-web-1", "region": "za", "role": "web", "status": "failed", "step": "restart",
           "exit_code": 1, "output_tail": "curl -H 'token: hunter2-token' failed"}
    store.record_host_results(deployment, [row])
    store.record_host_results(deployment, [{**row, "status": "rolled_back", "note": "switched back"}])
    results = store.host_results(deployment)
    assert len(results) == 1
    assert results[0]["status"] == "rolled_back"
    assert "hunter2-token" not in results[0]["output_tail"]


def test_a_reused_pid_is_not_mistaken_for_the_holder() -> None:
    me = os.getpid()
    assert process_alive(me, pid_start_time(me))
    assert not process_alive(me, "1")  # same pid, another start time: a different process
    assert not process_alive(_dead_pid(), None)


def test_an_unusable_store_url_is_a_clear_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="state store"):
        Store("nosuchdriver://x/y", "www")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError):
        Store(f"sqlite:///{blocker / 'sub' / 'state.db'}", "www")


def test_tables_hold_every_row_by_app() -> None:
    for table in (t.releases, t.deployments, t.host_state, t.pointers, t.locks, t.events):
        assert "app" in table.c, table.name
    assert isinstance(t.metadata, sa.MetaData)


def test_of_many_simultaneous_takers_exactly_one_gets_the_lock(store: Store) -> None:
    import threading

    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def take(n: int) -> None:
        barrier.wait(timeout=10)
        try:
            store.lock("production", owner=f"taker-{n}", reason="race", lease=60, pid=os.getpid())
            outcomes.append("won")
        except LockHeld:
            outcomes.append("held")

    threads = [threading.Thread(target=take, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["held"] * 5 + ["won"]


def test_a_store_made_by_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE host_results (id INTEGER PRIMARY KEY, deployment_id INTEGER NOT NULL, "
                             "host VARCHAR(255) NOT NULL, region VARCHAR(64) NOT NULL, role VARCHAR(64) NOT NULL, "
                             "status VARCHAR(16) NOT NULL)")
    engine.dispose()
    store = Store(url, "www")
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("host_results")}
    assert {"error", "note", "transferred", "output_tail"} <= columns
    store.close()


def test_a_batch_of_writes_is_one_transaction_with_one_lease_check(store: Store) -> None:
    lease = store.lock("production", owner="ann", reason="deploy", lease=90, pid=os.getpid())
    fenced = store.under(lease)
    deployment = fenced.start_deployment(environment="production", regions=["za"], release="R2",
                                         previous_by_region={}, kind="deploy", user="ann")
    lease_checks: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "generation" in statement and "FROM locks" in statement:
            lease_checks.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        with fenced.batch():
            fenced.record_host_results(deployment, [{"host": "za-1", "region": "za", "role": "web",
                                                     "status": "succeeded", "release": "R2"}])
            fenced.set_host_releases("production", [("za-1", "za", "web", "R2")], {"za-1": True})
        assert len(lease_checks) == 1, lease_checks
        # All or nothing: a batch that fails part-way writes none of it.
        def stopped_part_way() -> None:
            with fenced.batch():
                fenced.set_host_releases("production", [("za-2", "za", "web", "R2")])
                raise RuntimeError("the recorder stopped")

        with pytest.raises(RuntimeError):
            stopped_part_way()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert store.host_releases("production") == {"za-1": "R2"}
    assert [r["host"] for r in store.host_results(deployment)] == ["za-1"]
    assert store.hosts_without_zstd("production") == []
    # The lease is still checked: a batch under a lost lease writes nothing.
    store.unlock("production")
    with pytest.raises(LockLost), fenced.batch():
        fenced.set_host_releases("production", [("za-3", "za", "web", "R2")])
    assert store.host_releases("production") == {"za-1": "R2"}


def _statements(store: Store) -> list[str]:
    """Every statement the store's engine runs from now on, as SQL text (a list that grows)."""
    seen: list[str] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(" ".join(statement.split()))

    return seen


def test_what_hosts_run_is_upserted_and_a_known_zstd_is_kept_when_not_told(store: Store) -> None:
    store.set_host_releases("production", [("za-1", "za", "web", "R1"), ("za-2", "za", "web", "R1")],
                            {"za-1": True, "za-2": False})
    store.set_host_releases("production", [("za-1", "za", "api", "R2"), ("za-3", "za", "web", "R2")])
    assert store.host_releases("production") == {"za-1": "R2", "za-2": "R1", "za-3": "R2"}
    assert store.hosts_without_zstd("production") == ["za-2"]
    store.set_host_releases("production", [("za-2", "za", "web", "R2")], {"za-2": True})
    assert store.hosts_without_zstd("production") == []
    with store.engine.connect() as conn:
        rows = {r.host: (r.role, r.zstd) for r in conn.execute(sa.select(t.host_state))}
    assert rows == {"za-1": ("api", True), "za-2": ("web", True), "za-3": ("web", None)}


def test_a_group_of_hosts_is_written_without_looking_their_rows_up_first(store: Store) -> None:
    deployment = store.start_deployment(environment="production", regions=["za"], release="R1",
                                        previous_by_region={}, kind="deploy", user="ann")
    hosts = [f"za-{n}" for n in range(300)]
    seen = _statements(store)
    store.record_host_results(deployment, [{"host": h, "region": "za", "role": "web", "status": "succeeded"}
                                           for h in hosts], first=hosts)
    store.set_host_releases("production", [(h, "za", "web", "R1") for h in hosts])
    # Neither a DELETE nor a SELECT by a list of hosts: on PostgreSQL each scanned the rows written so far.
    assert not [s for s in seen if s.startswith(("DELETE", "SELECT"))], seen
    # A host named again (not first any more) replaces its row: still one per host.
    store.record_host_results(deployment, [{"host": "za-7", "region": "za", "role": "web", "status": "rolled_back"}])
    results = store.host_results(deployment)
    assert len(results) == 300
    assert {r["status"] for r in results if r["host"] == "za-7"} == {"rolled_back"}


def test_the_recorder_writes_a_host_once_then_replaces_its_row_when_its_outcome_changes(store: Store) -> None:
    from conveyor.engine.events import HostFinished
    from conveyor.engine.results import HostOutcome, HostStatus
    from conveyor.inventory import Host
    from conveyor.operations.recording import StoreRecorder

    deployment = store.start_deployment(environment="production", regions=["za"], release="R2",
                                        previous_by_region={}, kind="deploy", user="ann")
    recorder = StoreRecorder(store, "production", deployment)
    hosts = [Host(name=f"za-{n}", environment="production", region="za", role="web", address="10.0.0.1")
             for n in range(3)]
    outcomes = [HostOutcome(host=h, status=HostStatus.SUCCEEDED, release="R2", previous="R1") for h in hosts]
    seen = _statements(store)
    for outcome in outcomes:
        recorder(HostFinished(outcome=outcome))
    recorder.flush()
    assert not [s for s in seen if s.startswith("DELETE FROM host_results")], seen
    outcomes[1].status, outcomes[1].release = HostStatus.ROLLED_BACK, "R1"  # its region was switched back
    recorder(HostFinished(outcome=outcomes[1]))
    recorder.flush()
    assert [s for s in seen if s.startswith("DELETE FROM host_results")]
    assert sorted((r["host"], r["status"]) for r in store.host_results(deployment)) == [
        ("za-0", "succeeded"), ("za-1", "rolled_back"), ("za-2", "succeeded")]
    assert store.host_releases("production") == {"za-0": "R2", "za-1": "R1", "za-2": "R2"}


def test_a_sqlite_too_old_for_upserts_is_a_clear_state_error(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 22, 0))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.22.0")
    with pytest.raises(StateError, match=r"needs SQLite 3\.24\.0 or newer .* has 3\.22\.0"):
        Store(f"sqlite:///{tmp_path / 'state.db'}", "www")
    assert not (tmp_path / "state.db").exists()


def test_a_sqlite_store_never_loads_postgresql_support(tmp_path: Path) -> None:
    # Every command pays for what it imports: a host's release written on SQLite asks for SQLite's INSERT … ON
    # CONFLICT only (the PostgreSQL dialect's modules are ~20 ms of every start).
    script = (
        "import sys\n"
        "from conveyor.state.store import Store\n"
        f"store = Store('sqlite:///{tmp_path / 'state.db'}', 'shop')\n"
        "store.set_host_release('production', 'web-1', 'za', 'web', 'R1')\n"
        "assert store.host_releases('production')['web-1'] == 'R1'\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = done.stdout.strip()
    assert "sqlalchemy.dialects.sqlite" in loaded
    assert "postgresql" not in loaded
