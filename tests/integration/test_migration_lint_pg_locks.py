"""The linter's PostgreSQL verdicts against what a real PostgreSQL server does (the session's server).

Each statement runs in one session, inside a transaction held open as a migration tool holds it (the whole
file in one transaction), after the statements before it in the same file. While it is open, a second
session with `lock_timeout` tries to read and to write a row of each table the statement names. The first
session also tells whether the statement rewrote the table (a new relfilenode for it or an index) or read
all of it (`pg_stat_xact_user_tables`), and then runs the queries of the release still running (each in a
savepoint) to see which fail now that did not before. From that the server's class:

    breaking      a query of the running release fails, or rows are gone
    needs-window  reads or writes wait, and the statement rewrites or reads the whole table while they do
    safe          otherwise (a lock held only for a moment, or none)

A statement PostgreSQL refuses inside a transaction (CREATE INDEX CONCURRENTLY, VACUUM) fails the migration:
never safe. The linter (Conveyor's own rules; the tables given as an earlier file) must agree, but for
KNOWN_OVER_CAUTION; and where a finding names a lock, the second session must see that lock.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conveyor.migrations.lint import judge_sql
from conveyor.migrations.sqlschema import Schema

pytestmark = pytest.mark.integration

TABLES = """
CREATE TABLE teams (id bigint PRIMARY KEY, title text);
CREATE TABLE accounts (
  id bigint PRIMARY KEY,
  team_id bigint,
  email varchar(100) NOT NULL,
  name text,
  balance numeric(12,2) NOT NULL DEFAULT 0,
  status varchar(20) NOT NULL DEFAULT 'active',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_status ON accounts (status);
CREATE TABLE events (id bigint NOT NULL, kind text NOT NULL);
CREATE TYPE mood AS ENUM ('happy', 'sad');
"""
ROWS = """
INSERT INTO teams (id, title) SELECT g, 'team ' || g FROM generate_series(1, 100) AS g;
INSERT INTO accounts (id, team_id, email, name, balance) SELECT g, g % 100 + 1, 'a' || g || '@example.com',
  'name ' || g, g FROM generate_series(1, 2000) AS g;
INSERT INTO events (id, kind) SELECT g, 'k' || g % 5 FROM generate_series(1, 500) AS g;
"""
ROW_COUNTS = {"teams": 100, "accounts": 2000, "events": 500}

# The release still running: every column it knows read by name, written with NULL where it may, with its
# longest and most extreme values, and left out where it has a default. Ids from 100000 up.
RELEASE = [
    "SELECT id, team_id, email, name, balance, status, created_at FROM accounts WHERE id = 1",
    "INSERT INTO accounts (id, team_id, email, name, balance, status) VALUES (100001, 1, repeat('x', 100), NULL, "
    "9999999999.99, repeat('s', 20))",
    "INSERT INTO accounts (id, email, balance) VALUES (100002, 'b@example.com', -9999999999.99)",
    "INSERT INTO accounts (id, email) VALUES (100003, 'c@example.com')",
    "UPDATE accounts SET name = NULL, team_id = NULL WHERE id = 2",
    "SELECT id, title FROM teams WHERE id = 1",
    "INSERT INTO teams (id, title) VALUES (100001, NULL)",
    "SELECT id, kind FROM events WHERE id = 1",
    "INSERT INTO events (id, kind) VALUES (100001, 'k')",
]


@dataclass(frozen=True)
class Case:
    """A statement, the statements before it in the same file, and the earlier files (already applied)."""

    sql: str
    within: tuple[str, ...] = ()
    earlier: tuple[str, ...] = ()
    on: tuple[str, ...] = ()       # the tables it works on, when it names only an index

    @property
    def id(self) -> str:
        parts = [*(f"[earlier: {e}]" for e in self.earlier), *(f"[before: {w}]" for w in self.within), self.sql]
        return " ".join(" ".join(parts).split())


C = Case
CORPUS = [
    C("ALTER TABLE accounts ADD COLUMN note text"),
    C("ALTER TABLE accounts ADD COLUMN active boolean NOT NULL DEFAULT true"),
    C("ALTER TABLE accounts ADD COLUMN seen_at timestamptz DEFAULT now()"),
    C("ALTER TABLE accounts ADD COLUMN active boolean NOT NULL"),
    C("ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid()"),
    C("ALTER TABLE accounts ADD COLUMN seq bigserial"),
    C("ALTER TABLE accounts ADD COLUMN n int GENERATED ALWAYS AS IDENTITY"),
    C("ALTER TABLE accounts ADD COLUMN doubled numeric GENERATED ALWAYS AS (balance * 2) STORED"),
    C("ALTER TABLE accounts ADD COLUMN team2 bigint REFERENCES teams (id)"),
    C("ALTER TABLE accounts DROP COLUMN name"),
    C("ALTER TABLE accounts RENAME COLUMN name TO full_name"),
    C("ALTER TABLE accounts RENAME TO users"),
    C("ALTER TABLE accounts ALTER COLUMN name SET NOT NULL"),
    C("ALTER TABLE accounts ALTER COLUMN email SET NOT NULL"),
    C("ALTER TABLE accounts ALTER COLUMN name SET NOT NULL",
      earlier=("ALTER TABLE accounts ADD CONSTRAINT name_nn CHECK (name IS NOT NULL) NOT VALID",
               "ALTER TABLE accounts VALIDATE CONSTRAINT name_nn")),
    C("ALTER TABLE accounts ALTER COLUMN status DROP NOT NULL"),
    C("ALTER TABLE accounts ALTER COLUMN status SET DEFAULT 'new'"),
    C("ALTER TABLE accounts ALTER COLUMN balance DROP DEFAULT"),
    C("ALTER TABLE accounts ALTER COLUMN name DROP DEFAULT"),
    C("ALTER TABLE accounts ADD COLUMN score int NOT NULL DEFAULT 0, ALTER COLUMN score DROP DEFAULT"),
    C("ALTER TABLE accounts ALTER COLUMN score DROP DEFAULT",
      within=("ALTER TABLE accounts ADD COLUMN score int DEFAULT 0 NOT NULL",)),
    C("ALTER TABLE accounts ALTER COLUMN email TYPE varchar(200)"),
    C("ALTER TABLE accounts ALTER COLUMN email TYPE text"),
    C("ALTER TABLE accounts ALTER COLUMN email TYPE varchar(50)"),
    C("ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14,2)"),
    C("ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(16,4)"),
    C("ALTER TABLE accounts ALTER COLUMN status TYPE varchar(40)"),
    C("ALTER TABLE accounts SET (fillfactor = 70)"),
    C("CREATE INDEX accounts_email ON accounts (email)"),
    C("CREATE UNIQUE INDEX accounts_email_u ON accounts (email)"),
    C("CREATE INDEX CONCURRENTLY accounts_email ON accounts (email)"),
    C("DROP INDEX accounts_status", on=("accounts",)),
    C("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (team_id) REFERENCES teams (id)"),
    C("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (team_id) REFERENCES teams (id) NOT VALID"),
    C("ALTER TABLE accounts VALIDATE CONSTRAINT accounts_team",
      within=("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (team_id) REFERENCES teams (id) "
              "NOT VALID",)),
    C("ALTER TABLE accounts VALIDATE CONSTRAINT accounts_team",
      earlier=("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (team_id) REFERENCES teams (id) "
               "NOT VALID",)),
    C("ALTER TABLE accounts ADD CONSTRAINT positive CHECK (balance >= 0)"),
    C("ALTER TABLE accounts ADD CONSTRAINT positive CHECK (balance >= 0) NOT VALID"),
    C("ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE (email)"),
    C("ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE USING INDEX accounts_email_idx",
      earlier=("CREATE UNIQUE INDEX accounts_email_idx ON accounts (email)",)),
    C("ALTER TABLE events ADD PRIMARY KEY (id)"),
    C("TRUNCATE accounts"),
    C("DELETE FROM events"),
    C("DELETE FROM events WHERE id > 100000"),
    C("UPDATE accounts SET status = 'active'"),
    C("UPDATE accounts SET status = 'active' WHERE id < 100"),
    C("INSERT INTO teams (id, title) VALUES (5000, 'new')"),
    C("INSERT INTO events (id, kind) SELECT id, 'copy' FROM events"),
    C("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE"),
    C("CLUSTER accounts USING accounts_pkey"),
    C("REINDEX TABLE accounts"),
    C("VACUUM accounts"),
    C("ALTER TABLE teams ADD COLUMN slug text"),
    C("DROP TABLE events"),
    C("ALTER TYPE mood ADD VALUE 'meh'"),
    C("CREATE TABLE audits (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"),
]

# Where the linter is harsher than what the server shows, and why.
KNOWN_OVER_CAUTION = {
    "DROP INDEX accounts_status":
        "DROP INDEX holds ACCESS EXCLUSIVE only for a moment, but it queues behind every running query and every "
        "query queues behind it; DROP INDEX CONCURRENTLY does without, so Conveyor asks for it",
    "INSERT INTO events (id, kind) SELECT id, 'copy' FROM events":
        "PostgreSQL locks none of the rows it reads, but one transaction over a whole table holds back vacuum and "
        "makes replicas lag for as long; batches do not",
    "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE":
        "the lock lasts until the migration's transaction ends, however long the rest of the file takes: the "
        "probe sees the lock, not how long the file holds it",
}


@dataclass(frozen=True)
class Observed:
    """What the server showed for one case."""

    failed: str | None              # the error, when the statement itself failed
    reads_blocked: bool
    writes_blocked: bool
    heavy: bool                     # rewrote the table (or an index), or read all of it
    broke: tuple[str, ...]          # queries of the running release that fail now, rows gone

    @property
    def cls(self) -> str:
        if self.failed is not None:
            return "fails"
        if self.broke:
            return "breaking"
        return "needs-window" if (self.reads_blocked or self.writes_blocked) and self.heavy else "safe"


def _tables_of(sql: str) -> list[str]:
    return [t for t in ROW_COUNTS if re.search(rf"\b{t}\b", sql)]


class Prober:
    """Runs cases against a database holding TABLES and ROWS (a template, copied for cases with earlier files)."""

    def __init__(self, admin_url: str, template: str) -> None:
        self.admin_url = admin_url
        self.template = template

    def url(self, database: str) -> str:
        return re.sub(r"/[^/?]*(\?|$)", rf"/{database}\1", self.admin_url, count=1)

    @staticmethod
    def _connect(url: str, *, autocommit: bool = False) -> Any:
        import psycopg

        return psycopg.connect(url, autocommit=autocommit)

    def observe(self, case: Case) -> Observed:
        """A case on the template itself (its transaction is rolled back), or, when earlier files must be
        applied first, on a copy of it."""
        if not case.earlier:
            return self._observe(case, self.template)
        database = f"probe_{uuid.uuid4().hex[:10]}"
        with self._connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {database} TEMPLATE {self.template}")
        try:
            return self._observe(case, database)
        finally:
            with self._connect(self.admin_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE {database} WITH (FORCE)")

    def _observe(self, case: Case, database: str) -> Observed:
        import psycopg

        url = self.url(database)
        if case.earlier:
            with self._connect(url, autocommit=True) as earlier:
                for sql in case.earlier:
                    earlier.execute(sql)
        tables = list(case.on) or _tables_of(" ".join((case.sql, *case.within)))
        with self._connect(url) as session:
            before = {failure.split(":")[0] for failure in _release_fails(session, tables)}
            for sql in case.within:
                session.execute(sql)
            nodes, reads = _relfilenodes(session, tables), _rows_read(session)
            try:
                session.execute(case.sql)
            except psycopg.Error as exc:
                session.rollback()
                return Observed(str(exc).splitlines()[0], False, False, False, ())
            heavy = bool(_relfilenodes(session, tables) - nodes) or _rows_read(session) > reads
            reads_blocked, writes_blocked = self._probe(url, tables)
            broke = tuple(f for f in _release_fails(session, tables) if f.split(":")[0] not in before)
            session.rollback()
        return Observed(None, reads_blocked, writes_blocked, heavy, broke)

    def _probe(self, url: str, tables: list[str]) -> tuple[bool, bool]:
        """Whether a second session's reads, and its writes, of the last row of these tables wait."""
        import psycopg

        reads = writes = False
        with self._connect(url) as prober:
            prober.execute("SET lock_timeout = '100ms'")
            prober.commit()
            for table in tables:
                last = ROW_COUNTS[table]
                for write, sql in ((False, f"SELECT * FROM {table} WHERE id = {last}"),
                                   (True, f"UPDATE {table} SET id = id WHERE id = {last}")):
                    try:
                        prober.execute(sql)
                    except psycopg.errors.LockNotAvailable:
                        writes, reads = (True, reads) if write else (writes, True)
                    except psycopg.errors.UndefinedTable:
                        pass
                    prober.rollback()
        return reads, writes


def _relfilenodes(session: Any, tables: list[str]) -> set[int]:
    """The storage of these tables and their indexes (a rewrite, or a new index, gives a new one; a renamed
    index keeps its own)."""
    rows = session.execute(
        "SELECT c.relfilenode FROM pg_class c WHERE c.oid IN ("
        " SELECT oid FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'"
        " UNION SELECT indexrelid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = ANY(%s))",
        (tables, tables)).fetchall()
    return {int(node) for (node,) in rows}


def _rows_read(session: Any) -> int:
    """Rows this transaction has read by sequential scans so far."""
    (count,) = session.execute("SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_xact_user_tables").fetchone()
    return int(count)


def _release_fails(session: Any, tables: list[str]) -> list[str]:
    """The running release's queries on these tables that fail, and tables with rows gone (in savepoints)."""
    import psycopg

    failed = []
    for table in tables:
        try:
            with session.transaction():
                (count,) = session.execute(f"SELECT count(*) FROM {table}").fetchone()
            if count < ROW_COUNTS[table]:
                failed.append(f"{table}: rows are gone")
        except psycopg.Error as exc:
            failed.append(f"{table}: {str(exc).splitlines()[0]}")
    for sql in RELEASE:
        if not set(_tables_of(sql)) <= set(tables):
            continue
        try:
            with session.transaction(force_rollback=True):
                session.execute(sql)
        except psycopg.Error as exc:
            failed.append(f"{sql[:50]}: {str(exc).splitlines()[0]}")
    return failed


@pytest.fixture(scope="module")
def prober(postgres_url: str) -> Iterator[Prober]:
    import psycopg

    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    template = f"locks_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {template}")
    found = Prober(admin, template)
    with psycopg.connect(found.url(template), autocommit=True) as connection:
        connection.execute(TABLES + ROWS)
    yield found
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {template} WITH (FORCE)")


@pytest.fixture(scope="module")
def observed(prober: Prober) -> dict[str, Observed]:
    return {case.id: prober.observe(case) for case in CORPUS}


def lint(case: Case) -> tuple[str, list[Any]]:
    """The linter's class and findings for a case's statement (PostgreSQL 16, each file in a transaction)."""
    schema = Schema()
    judge_sql(TABLES, "postgresql", "16", "expand", path="0001_tables.sql", schema=schema, squawk=False)
    for index, sql in enumerate(case.earlier):
        judge_sql(sql + ";", "postgresql", "16", "expand", path=f"0002_{index}.sql", schema=schema, squawk=False)
    text = "".join(f"{sql};\n" for sql in (*case.within, case.sql))
    statement = judge_sql(text, "postgresql", "16", "expand", path="0003_change.sql", schema=schema,
                          squawk=False).statements[-1]
    return statement.cls, list(statement.findings)


def test_the_corpus_covers_the_rules() -> None:
    assert len({case.id for case in CORPUS}) == len(CORPUS)
    rules = {f.rule for case in CORPUS for f in lint(case)[1]}
    assert {"pg.add-column", "pg.set-not-null", "pg.set-not-null-checked", "pg.drop-default-not-null",
            "pg.create-index-blocking", "pg.add-foreign-key", "pg.add-constraint-not-valid",
            "pg.validate-in-transaction", "pg.add-check-constraint", "pg.change-column-type", "pg.widen-column-type",
            "pg.narrow-column-type", "pg.add-column-volatile-default", "pg.add-column-generated",
            "pg.concurrently-in-transaction", "pg.delete-all-rows", "pg.unbounded-dml", "pg.truncate",
            "pg.drop-column", "pg.rename-column", "pg.add-unique-constraint", "pg.add-constraint-using-index",
            "pg.cluster", "pg.reindex-blocking", "pg.lock-table", "pg.drop-index-blocking"} <= rules


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_the_linter_agrees_with_the_server(observed: dict[str, Observed], case: Case) -> None:
    seen = observed[case.id]
    cls, findings = lint(case)
    said = f"linter: {cls} {[f.rule for f in findings]}; server: {seen}"
    assert all(f.message.strip() and f.hint.strip() for f in findings if f.cls != "safe"), said
    if seen.cls == "fails":
        assert cls != "safe", said
        return
    if cls == "safe":
        assert seen.cls == "safe", said
    if case.id in KNOWN_OVER_CAUTION:
        assert cls != seen.cls, f"no longer a disagreement: remove it from KNOWN_OVER_CAUTION: {said}"
    else:
        assert cls == seen.cls, said
    if case.within:
        return   # the locks of the statements before it are held too
    # A lock a finding names is the lock the second session meets.
    words = " ".join(f.message for f in findings if f.rule != "pg.add-column")
    if "ACCESS EXCLUSIVE" in words:
        assert (seen.reads_blocked, seen.writes_blocked) == (True, True), said
    elif "SHARE ROW EXCLUSIVE" in words or "SHARE lock" in words:
        assert seen.writes_blocked, said
