"""Schema migrations in the right phase, against a real PostgreSQL: one database per region.

The team's own tool is two psql command lines (`apply` runs one file and records its name in a
`schema_migrations` table; `status` prints the recorded names): Conveyor only knows the files, their
phase and their verdicts, and when to run them.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from clockshim import clock_env

pytestmark = pytest.mark.integration

SERVE = 'printf "%s %s\\n" "$CONVEYOR_RELEASE" "$CONVEYOR_HOST" > "$CONVEYOR_DEPLOY_TO/serving"'


def psql() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), reverse=True)
    assert found, "PostgreSQL's psql is not installed (apt-get install postgresql)"
    return str(found[0])


def settings(**extra: Any) -> dict[str, Any]:
    url = '"$(printenv DB_$CONVEYOR_REGION)"'
    return {
        "app": "shop",
        "artifact": {"path": "app"},
        "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": SERVE, "canary": 1, "batch": 1}},
        "migrations": {
            "dir": "db/migrations",
            "dialect": "postgresql",
            "version": "15",
            "apply": f'{psql()} {url} -q -v ON_ERROR_STOP=1 -1 -f "$CONVEYOR_MIGRATION_PATH" && '
                     f'{psql()} {url} -q -c "insert into schema_migrations values (\'$CONVEYOR_MIGRATION\')"',
            "status": f'{psql()} {url} -q -At -c "create table if not exists schema_migrations (name text '
                      f'primary key)" -c "select name from schema_migrations"',
            "run_on": "local",
        },
        "environments": {"production": {"transport": "local", "regions": {
            "za": {"hosts": {"web": ["za-web-1", "za-web-2"]}},
            "uk": {"hosts": {"web": ["uk-web-1"]}},
        }}},
        **extra,
    }


@pytest.fixture
def databases(postgres_url: str) -> dict[str, str]:
    """A fresh database per region; region → its URL (for psql and psycopg)."""
    import psycopg

    base = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    urls = {}
    with psycopg.connect(base, autocommit=True) as conn:
        for region in ("za", "uk"):
            name = f"shop_{region}_{uuid.uuid4().hex[:8]}"
            conn.execute(f"create database {name}")
            urls[region] = base.rsplit("/", 1)[0] + "/" + name
    return urls


def columns(url: str, table: str = "accounts") -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("select column_name from information_schema.columns where table_name = %s "
                            "order by ordinal_position", (table,)).fetchall()
    return [r[0] for r in rows]


def applied(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        exists = conn.execute("select to_regclass('schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return []
        return [r[0] for r in conn.execute("select name from schema_migrations order by name").fetchall()]


MIGRATIONS = {
    "0001_accounts.sql": "CREATE TABLE accounts (id bigint PRIMARY KEY, name text);\n",
    "0002_email.sql": "ALTER TABLE accounts ADD COLUMN email text;\n",
    "contract/0003_drop_name.sql": "-- the code stopped reading name in 0002's release\n"
                                   "ALTER TABLE accounts DROP COLUMN name;\n",
}


class Shop:
    """A local fleet whose app ships db/migrations, with the region databases in its environment."""

    def __init__(self, fleet: Any, databases: dict[str, str]) -> None:
        self.fleet = fleet
        self.databases = databases

    def env(self) -> dict[str, str]:
        return {**self.fleet.env_vars(), **{f"DB_{r}": url for r, url in self.databases.items()}}

    def run(self, *args: str, expect: int = 0, extra: dict[str, str] | None = None) -> Any:
        import json
        import subprocess

        done = subprocess.run(self.fleet.command(*args), capture_output=True, text=True,
                              env=self.env() | (extra or {}), cwd=self.fleet.root, timeout=120, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout) if "--json" in args and done.stdout.strip() else done

    def release(self, version: str, migrations: dict[str, str]) -> str:
        self.fleet.write_artifact(version)
        folder = self.fleet.artifact / "db" / "migrations"
        shutil.rmtree(folder, ignore_errors=True)
        for name, text in migrations.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return str(self.run("build", "--json")["id"])


@pytest.fixture
def shop(make_fleet: Any, databases: dict[str, str]) -> Shop:
    return Shop(make_fleet(settings()), databases)


def test_expand_runs_before_the_switch_and_contract_waits_for_a_later_deployment(shop: Shop) -> None:
    r1 = shop.release("1", {k: v for k, v in MIGRATIONS.items() if k.startswith("0001")})
    first = shop.run("deploy", "production", "--release", r1, "--yes", "--json")
    assert first["status"] == "succeeded", first
    for url in shop.databases.values():
        assert columns(url) == ["id", "name"]
        assert applied(url) == ["0001_accounts.sql"]

    r2 = shop.release("2", MIGRATIONS)
    plan = shop.run("plan", "production", "--release", r2, "--json")
    za = plan["migrations"]["za"]
    assert [m["name"] for m in za["expand"]] == ["0002_email.sql"]
    assert za["expand"][0]["class"] == "safe"
    assert [m["name"] for m in za["waiting"]] == ["contract/0003_drop_name.sql"]
    assert za["contract"] == []
    second = shop.run("deploy", "production", "--release", r2, "--yes", "--json")
    assert second["status"] == "succeeded", second
    for url in shop.databases.values():
        assert columns(url) == ["id", "name", "email"]  # expand ran; contract waits: r1 may still be rolled to

    # Every region runs r2, which carries the contract migration: the next deployment runs it first.
    r3 = shop.release("3", MIGRATIONS)
    plan = shop.run("plan", "production", "--release", r3, "--json")
    assert [m["name"] for m in plan["migrations"]["uk"]["contract"]] == ["contract/0003_drop_name.sql"]
    third = shop.run("deploy", "production", "--release", r3, "--yes", "--json")
    assert third["status"] == "succeeded", third
    for url in shop.databases.values():
        assert columns(url) == ["id", "email"]
        assert applied(url) == ["0001_accounts.sql", "0002_email.sql", "contract/0003_drop_name.sql"]

    # Back to r2 is fine (it carries the contract migration); back to r1 is refused: its code reads `name`.
    refused = shop.run("rollback", "production", "--to", r1, "--yes", expect=2)
    assert "contract/0003_drop_name.sql" in refused.stderr
    assert "predates it" in refused.stderr
    # r2's tarball leaves the store: what it carries is still known (recorded when it was built).
    for stale in (shop.fleet.root / ".conveyor" / "artifacts").glob(f"{r2}*"):
        stale.unlink()
    assert shop.run("rollback", "production", "--yes", "--json")["release"] == r2
    forced = shop.run("rollback", "production", "--to", r1, "--yes", "--force", "--reason", "restore drill",
                      "--json")
    assert forced["status"] == "succeeded"


def test_a_breaking_migration_in_the_expand_phase_is_refused_before_anything_changes(shop: Shop) -> None:
    r1 = shop.release("1", {"0001_accounts.sql": MIGRATIONS["0001_accounts.sql"]})
    shop.run("deploy", "production", "--release", r1, "--yes", "--json")
    r2 = shop.release("2", {"0001_accounts.sql": MIGRATIONS["0001_accounts.sql"],
                            "0002_drop.sql": "ALTER TABLE accounts DROP COLUMN name;\n"})
    refused = shop.run("deploy", "production", "--release", r2, "--yes", expect=2)
    assert "0002_drop.sql" in refused.stderr
    assert "contract" in refused.stderr  # the hint: make it a contract migration
    for url in shop.databases.values():
        assert columns(url) == ["id", "name"]
        assert applied(url) == ["0001_accounts.sql"]
    status = shop.run("status", "--json")["environments"]["production"]["regions"]
    assert {region: entry["release"] for region, entry in status.items()} == {"za": r1, "uk": r1}


def test_a_migration_that_needs_a_window_is_held_outside_it(make_fleet: Any, databases: dict[str, str]) -> None:
    fleet = make_fleet(settings(windows={"quiet": {"timezone": "UTC", "allow": [{"hours": "02:00-05:00"}]}}))
    fleet.settings["environments"]["production"]["migration_window"] = "quiet"
    fleet.write_config()
    shop = Shop(fleet, databases)
    r1 = shop.release("1", {"0001_accounts.sql": MIGRATIONS["0001_accounts.sql"],
                            "0002_index.sql": "CREATE INDEX accounts_name ON accounts (name);\n"})
    held = shop.run("deploy", "production", "--release", r1, "--yes", expect=3,
                    extra=clock_env("2026-11-26T14:00:00Z"))
    assert "0002_index.sql" in held.stderr
    assert "migration window quiet is closed" in held.stderr
    for url in databases.values():
        assert applied(url) == []
    done = shop.run("deploy", "production", "--release", r1, "--yes", "--json",
                    extra=clock_env("2026-11-26T03:00:00Z"))
    assert done["status"] == "succeeded", done
    for url in databases.values():
        assert applied(url) == ["0001_accounts.sql", "0002_index.sql"]


def test_a_failing_migration_stops_its_region_before_any_host_switches(shop: Shop) -> None:
    r1 = shop.release("1", {"0001_accounts.sql": "CREATE TABLE accounts (id bigint PRIMARY KEY, name text);\n"
                                                 "SELECT no_such_function();\n"})
    failed = shop.run("deploy", "production", "--release", r1, "--yes", "--json", expect=1)
    assert failed["status"] == "failed", failed
    assert "0001_accounts.sql" in failed["message"]
    assert shop.fleet.currents("production") == {"za-web-1": None, "za-web-2": None, "uk-web-1": None}
    for url in shop.databases.values():
        assert applied(url) == []  # the file ran in one transaction (-1) and rolled back


def test_db_status_reads_each_regions_database(shop: Shop) -> None:
    r1 = shop.release("1", {"0001_accounts.sql": MIGRATIONS["0001_accounts.sql"]})
    shop.run("deploy", "production", "--release", r1, "--yes", "--json")
    r2 = shop.release("2", dict(MIGRATIONS))
    status = shop.run("db", "status", "production", "--release", r2, "--json")
    for region in ("za", "uk"):
        entry = status["regions"][region]
        assert entry["applied"] == ["0001_accounts.sql"]
        assert [m["name"] for m in entry["pending"]] == ["0002_email.sql"]
        assert [m["name"] for m in entry["waiting"]] == ["contract/0003_drop_name.sql"]


def test_migrations_run_on_a_host_of_the_role_from_the_new_release_before_it_switches(
        make_fleet: Any, databases: dict[str, str]) -> None:
    fleet = make_fleet(settings())
    fleet.settings["migrations"]["run_on"] = "web"
    # The status command proves where it runs: in the new release's directory on a host, not yet current.
    fleet.settings["migrations"]["status"] = (
        'test -f VERSION && test "$(readlink ../../current)" != "releases/$CONVEYOR_RELEASE" && '
        + fleet.settings["migrations"]["status"])
    fleet.write_config()
    shop = Shop(fleet, databases)
    r1 = shop.release("1", {"0001_accounts.sql": MIGRATIONS["0001_accounts.sql"]})
    done = shop.run("deploy", "production", "--release", r1, "--yes", "--json")
    assert done["status"] == "succeeded", done
    for url in databases.values():
        assert applied(url) == ["0001_accounts.sql"]
        assert columns(url) == ["id", "name"]
    # The host that ran them received the release once: its move found it already there.
    za1 = next(h for h in done["regions"]["za"]["hosts"] if h["host"] == "za-web-1")
    assert za1["transferred"] is True
    assert za1["status"] == "succeeded"


# -- MariaDB ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mariadbserver import running

    with running(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


def test_on_mariadb_expand_runs_in_the_deployment_and_contract_in_a_later_one(make_fleet: Any,
                                                                               mariadb: Any) -> None:
    from mariadbserver import CLIENT

    names = {region: f"shop_{region}_{uuid.uuid4().hex[:8]}" for region in ("za", "uk")}
    for name in names.values():
        assert mariadb.run(f"CREATE DATABASE {name}").returncode == 0
    client = f"{CLIENT} --no-defaults --socket={mariadb.socket} -uroot \"$(printenv DB_$CONVEYOR_REGION)\""
    fleet = make_fleet(settings())
    fleet.settings["migrations"].update(
        dialect="mariadb", version=mariadb.version.split("-")[0],
        apply=f'{client} < "$CONVEYOR_MIGRATION_PATH" && '
              f'{client} -e "INSERT INTO schema_migrations VALUES (\'$CONVEYOR_MIGRATION\')"',
        status=f'{client} -N -e "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR(255) PRIMARY KEY); '
               f'SELECT name FROM schema_migrations"')
    fleet.write_config()
    shop = Shop(fleet, names)

    def cols(region: str) -> list[str]:
        done = mariadb.run("SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts' "
                           f"AND table_schema = '{names[region]}' ORDER BY ordinal_position")
        return done.stdout.split()

    history = {"0001_accounts.sql": "CREATE TABLE accounts (id BIGINT PRIMARY KEY, name VARCHAR(100) NULL);\n",
               "0002_email.sql": "ALTER TABLE accounts ADD COLUMN email VARCHAR(200) NULL;\n",
               "contract/0003_drop_name.sql": "ALTER TABLE accounts DROP COLUMN name;\n"}
    r1 = shop.release("1", {"0001_accounts.sql": history["0001_accounts.sql"]})
    assert shop.run("deploy", "production", "--release", r1, "--yes", "--json")["status"] == "succeeded"
    r2 = shop.release("2", history)
    plan = shop.run("plan", "production", "--release", r2, "--json")["migrations"]["za"]
    assert [(m["name"], m["class"]) for m in plan["expand"]] == [("0002_email.sql", "safe")]
    assert shop.run("deploy", "production", "--release", r2, "--yes", "--json")["status"] == "succeeded"
    assert cols("za") == cols("uk") == ["id", "name", "email"]
    status = shop.run("db", "status", "production", "--release", r2, "--json")["regions"]
    assert status["uk"]["applied"] == ["0001_accounts.sql", "0002_email.sql"]
    assert [m["name"] for m in status["uk"]["waiting"]] == []  # every region runs r2 now: it may run
    assert [m["name"] for m in status["uk"]["pending"]] == ["contract/0003_drop_name.sql"]
    r3 = shop.release("3", history)
    assert shop.run("deploy", "production", "--release", r3, "--yes", "--json")["status"] == "succeeded"
    assert cols("za") == cols("uk") == ["id", "email"]
