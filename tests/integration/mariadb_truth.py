"""Ground truth for the MariaDB verdicts: what a real server does with each statement of a corpus, on realistic
tables with rows, and whether the release still running keeps working afterwards.

For each statement, in a database of its own loaded with SCHEMA and ROWS:

1. online? An ALTER TABLE (or CREATE/DROP INDEX) is tried with ALGORITHM=INSTANT, then with
   ALGORITHM=INPLACE, LOCK=NONE, then as written: the first the server accepts says what it does
   (`instant`, `inplace`, or `locking`: it copies the table or blocks writes). A statement that cannot carry
   the clause (DROP TABLE, RENAME TABLE, TRUNCATE, UPDATE ...) is run inside a transaction held open while a
   second session tries to lock a row of each table it touches (`SELECT ... FOR UPDATE NOWAIT`): `instant` if
   nothing is held, else `locking`. OPTIMIZE TABLE is tried as the `ALTER TABLE ... FORCE` InnoDB runs for it
   (the server says so: "doing recreate + analyze instead"), DROP INDEX ... ON as its ALTER TABLE form (it
   takes no ALGORITHM clause).
2. compatible? RELEASE, the queries of the release still running (it reads every column it knows by name,
   writes every one, NULL where it may, the longest values it may, every ENUM member, and leaves out the
   columns that have a default), is run afterwards; and the rows it wrote before are counted. Any error, or a
   row gone, is `breaking`.

The server's class is then `breaking` (2 fails), `safe` (`instant` or `inplace`) or `needs-window`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE customers (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(191) NOT NULL,
  name VARCHAR(100) NOT NULL,
  country CHAR(2) NULL,
  phone VARCHAR(30) NULL,
  tier ENUM('free','pro','enterprise') NOT NULL DEFAULT 'free',
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY uq_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE orders (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  ref VARCHAR(40) NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'new',
  note VARCHAR(100) NULL,
  amount DECIMAL(10,2) NOT NULL DEFAULT 0,
  qty INT NOT NULL DEFAULT 1,
  total DECIMAL(12,2) AS (amount * qty) VIRTUAL,
  placed_at DATETIME NULL,
  KEY idx_status (status),
  UNIQUE KEY uq_ref (ref),
  CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE payments (
  id BIGINT NOT NULL PRIMARY KEY,
  order_id BIGINT NOT NULL,
  method ENUM('card','bank','wallet') NOT NULL,
  amount DECIMAL(10,2) NOT NULL,
  memo VARCHAR(60) NULL,
  KEY idx_order (order_id),
  CONSTRAINT fk_payments_order FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE articles (
  id BIGINT NOT NULL PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  body TEXT NULL,
  views INT NOT NULL DEFAULT 0,
  FULLTEXT KEY ft_text (title, body)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE legacy_users (
  id INT NOT NULL PRIMARY KEY,
  login VARCHAR(60) NOT NULL,
  display VARCHAR(80) NULL,
  bio VARCHAR(200) NULL,
  KEY idx_login (login)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;
CREATE TABLE settings (
  id INT NOT NULL PRIMARY KEY,
  name VARCHAR(50) NOT NULL,
  value VARCHAR(200) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;
CREATE TABLE events (
  id BIGINT NOT NULL,
  created DATE NOT NULL,
  kind VARCHAR(20) NOT NULL,
  payload VARCHAR(255) NULL,
  PRIMARY KEY (id, created)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
  PARTITION BY RANGE COLUMNS (created) (
    PARTITION p2024 VALUES LESS THAN ('2025-01-01'),
    PARTITION p2025 VALUES LESS THAN ('2026-01-01'),
    PARTITION pmax VALUES LESS THAN (MAXVALUE));
CREATE TABLE tags (
  id BIGINT NOT NULL,
  label VARCHAR(30) NOT NULL,
  slug VARCHAR(30) NULL,
  UNIQUE KEY uq_tag_id (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE visits (
  customer_id BIGINT NOT NULL,
  page VARCHAR(100) NOT NULL,
  seen DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=latin1;
"""

# Rows the tables hold before each statement, by table.
ROW_COUNTS = {"customers": 50, "orders": 200, "payments": 150, "articles": 30, "legacy_users": 50, "settings": 20,
              "events": 120, "tags": 40, "visits": 100}


def _rows() -> str:
    def values(count: int, row: Callable[[int], str]) -> str:
        return ", ".join(row(i) for i in range(1, count + 1))

    tiers = ("free", "pro", "enterprise")
    methods = ("card", "bank", "wallet")
    days = ("2024-03-01", "2025-06-01", "2026-02-01")
    return "\n".join([
        "INSERT INTO customers (email, name, country, phone, tier) VALUES " + values(
            50, lambda i: f"('c{i}@example.com', 'Customer {i}', 'ZA', NULL, '{tiers[i % 3]}')") + ";",
        "INSERT INTO orders (customer_id, ref, status, note, amount, qty, placed_at) VALUES " + values(
            200, lambda i: f"({i % 50 + 1}, 'R{i:05}', 'new', 'note {i}', {i}.25, {i % 5 + 1}, NULL)") + ";",
        "INSERT INTO payments (id, order_id, method, amount, memo) VALUES " + values(
            150, lambda i: f"({i}, {i}, '{methods[i % 3]}', {i}.25, NULL)") + ";",
        "INSERT INTO articles (id, title, body) VALUES " + values(
            30, lambda i: f"({i}, 'Title {i}', 'Some words about thing {i}')") + ";",
        "INSERT INTO legacy_users (id, login, display, bio) VALUES " + values(
            50, lambda i: f"({i}, 'user{i}', 'User {i}', NULL)") + ";",
        "INSERT INTO settings (id, name, value) VALUES " + values(20, lambda i: f"({i}, 'key{i}', 'value {i}')") + ";",
        "INSERT INTO events (id, created, kind, payload) VALUES " + values(
            120, lambda i: f"({i}, '{days[i % 3]}', 'k{i % 4}', NULL)") + ";",
        "INSERT INTO tags (id, label, slug) VALUES " + values(40, lambda i: f"({i}, 'tag {i}', 'tag-{i}')") + ";",
        "INSERT INTO visits (customer_id, page, seen) VALUES " + values(
            100, lambda i: f"({i % 50 + 1}, '/page/{i}', '2026-01-01 10:00:00')") + ";",
    ])


ROWS = _rows()

# Tables whose foreign keys point at others: a case that uses one gets those too.
_PARENTS = {"orders": ("customers",), "payments": ("orders", "customers")}


def _by_table(script: str) -> dict[str, str]:
    """The statements of a script that create or fill each table, by table."""
    found: dict[str, str] = {}
    for statement in script.split(";\n"):
        match = re.search(r"\b(?:TABLE|INTO)\s+(\w+)", statement)
        if match and statement.strip():
            found[match.group(1)] = found.get(match.group(1), "") + statement.strip().rstrip(";") + ";\n"
    return found


_CREATE, _FILL = _by_table(SCHEMA), _by_table(ROWS)


def tables_of(sql: str) -> list[str]:
    """The corpus tables a piece of SQL names, with the tables their foreign keys need, parents first."""
    named = {t for t in ROW_COUNTS if re.search(rf"\b{t}\b", sql)}
    for table in list(named):
        named.update(_PARENTS.get(table, ()))
    return [t for t in ROW_COUNTS if t in named]


def _longest(n: int) -> str:
    return "'" + "x" * n + "'"


# What the release still running does: it names every column it knows, writes NULL where it may and the
# longest values it may, every ENUM member, and leaves out the columns that have a default (DEFAULT is how it
# counts on them). Ids from 100000 up keep clear of the rows.
RELEASE = [
    # customers
    "SELECT id, email, name, country, phone, tier, created_at FROM customers WHERE id = 1",
    f"INSERT INTO customers (id, email, name, country, phone, tier) VALUES (100001, {_longest(191)}, {_longest(100)}, "
    "NULL, NULL, 'enterprise')",
    "INSERT INTO customers (id, email, name, country, phone) VALUES (100002, 'n@example.com', 'N', 'GB', "
    f"{_longest(30)})",
    "INSERT INTO customers (id, email, name, tier) VALUES (100003, 'p@example.com', 'P', 'pro')",
    "INSERT INTO customers (id, email, name, tier) VALUES (100004, 'f@example.com', 'F', 'free')",
    "UPDATE customers SET phone = NULL, country = NULL WHERE id = 2",
    # orders
    "SELECT id, customer_id, ref, status, note, amount, qty, total, placed_at FROM orders WHERE id = 1",
    f"INSERT INTO orders (id, customer_id, ref, status, note, amount, qty, placed_at) VALUES (100001, 1, "
    f"{_longest(40)}, {_longest(20)}, {_longest(100)}, 99999999.99, 1, NULL)",
    "INSERT INTO orders (id, customer_id, ref, amount, qty) VALUES (100005, 5, 'REL-5', 0, 2147483647)",
    "INSERT INTO orders (id, customer_id, ref) VALUES (100002, 2, 'REL-2')",
    "INSERT INTO orders (id, customer_id, ref, note, placed_at) VALUES (100003, 3, 'REL-3', NULL, NOW())",
    "INSERT INTO orders (id, customer_id, ref, amount, qty, placed_at) VALUES (100004, 4, 'REL-4', -99999999.99, 1, "
    "'9999-12-31 23:59:59')",
    "INSERT INTO orders (id, customer_id, ref, amount, qty) VALUES (100006, 6, 'REL-6', 0, -2147483648)",
    "UPDATE orders SET note = NULL, placed_at = NULL WHERE id = 2",
    # payments
    "SELECT id, order_id, method, amount, memo FROM payments WHERE id = 1",
    f"INSERT INTO payments (id, order_id, method, amount, memo) VALUES (100001, 1, 'card', 99999999.99, "
    f"{_longest(60)})",
    "INSERT INTO payments (id, order_id, method, amount) VALUES (100002, 1, 'bank', -99999999.99)",
    "INSERT INTO payments (id, order_id, method, amount, memo) VALUES (100003, 1, 'wallet', 1, NULL)",
    # articles
    "SELECT id, title, body, views FROM articles WHERE MATCH (title, body) AGAINST ('words') LIMIT 1",
    f"INSERT INTO articles (id, title, body) VALUES (100001, {_longest(200)}, NULL)",
    "UPDATE articles SET views = views + 1 WHERE id = 1",
    # legacy_users (utf8mb3)
    "SELECT id, login, display, bio FROM legacy_users WHERE login = 'user1'",
    f"INSERT INTO legacy_users (id, login, display, bio) VALUES (100001, {_longest(60)}, NULL, {_longest(200)})",
    f"INSERT INTO legacy_users (id, login, display) VALUES (100002, 'u2', {_longest(80)})",
    # settings (utf8mb3, no index on its strings)
    "SELECT id, name, value FROM settings WHERE id = 1",
    f"INSERT INTO settings (id, name, value) VALUES (100001, {_longest(50)}, NULL)",
    f"INSERT INTO settings (id, name, value) VALUES (100002, 'k', {_longest(200)})",
    # events (partitioned)
    "SELECT id, created, kind, payload FROM events WHERE id = 1",
    f"INSERT INTO events (id, created, kind, payload) VALUES (100001, '2024-05-01', {_longest(20)}, NULL)",
    f"INSERT INTO events (id, created, kind, payload) VALUES (100002, '2027-05-01', 'k', {_longest(255)})",
    "INSERT INTO events (id, created, kind) VALUES (100003, '2025-05-01', 'k')",
    # tags (no primary key)
    "SELECT id, label, slug FROM tags WHERE id = 1",
    f"INSERT INTO tags (id, label, slug) VALUES (100001, {_longest(30)}, NULL)",
    "INSERT INTO tags (id, label) VALUES (100002, 'x')",
    # visits (no key at all, latin1)
    "SELECT customer_id, page, seen FROM visits WHERE customer_id = 1",
    f"INSERT INTO visits (customer_id, page, seen) VALUES (1, {_longest(100)}, NOW())",
]


@dataclass(frozen=True)
class Case:
    """One statement of the corpus, and the statements that run before it in the same migration."""

    sql: str
    before: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        after = f" [after: {'; '.join(self.before)}]" if self.before else ""
        return " ".join(f"{self.sql}{after}".split())


@dataclass(frozen=True)
class ServerVerdict:
    """What the server did: the mildest way it ran the statement, and what broke for the running release."""

    how: str                  # instant | inplace | locking
    broke: tuple[str, ...]    # the release's queries that failed (with the error), or rows that are gone

    @property
    def cls(self) -> str:
        if self.broke:
            return "breaking"
        return "safe" if self.how in ("instant", "inplace") else "needs-window"


_ALTER = re.compile(r"^\s*ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(`?\w+`?)\s+(.*)$", re.IGNORECASE | re.DOTALL)
_CREATE_INDEX = re.compile(r"^\s*CREATE\s+(?:UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\b", re.IGNORECASE)
_DROP_INDEX = re.compile(r"^\s*DROP\s+INDEX\s+(`?\w+`?)\s+ON\s+(`?\w+`?)\s*$", re.IGNORECASE)
_PARTITIONING = re.compile(r"^(?:PARTITION|REMOVE|COALESCE|REORGANIZE|EXCHANGE|(?:TRUNCATE|DROP|ADD|ANALYZE|CHECK|"
                          r"OPTIMIZE|REBUILD|REPAIR)\s+PARTITION)\b", re.IGNORECASE)
_OPTIMIZE = re.compile(r"^\s*OPTIMIZE\s+(?:NO_WRITE_TO_BINLOG\s+|LOCAL\s+)?TABLE\s+(`?\w+`?)\s*$", re.IGNORECASE)
# The column a second session looks up to lock the last row the table held (one that a bounded batch at the
# start of the table leaves alone, and that no INSERT makes).
_LAST_ROW = {"customers": "id", "orders": "id", "payments": "id", "articles": "id", "legacy_users": "id",
             "settings": "id", "events": "id", "tags": "id", "visits": "customer_id"}


def _attempts(sql: str) -> list[tuple[str, str]] | None:
    """The statement with ALGORITHM/LOCK clauses, mildest first, each with what acceptance means; None when
    it cannot carry the clause."""
    optimize = _OPTIMIZE.match(sql)
    if optimize:
        sql = f"ALTER TABLE {optimize.group(1)} FORCE"
    drop_index = _DROP_INDEX.match(sql)
    if drop_index:   # MariaDB's DROP INDEX takes no ALGORITHM clause: its ALTER TABLE form does
        sql = f"ALTER TABLE {drop_index.group(2)} DROP INDEX {drop_index.group(1)}"
    alter = _ALTER.match(sql)
    if alter and _PARTITIONING.match(alter.group(2)):
        # Partitioning takes one option before it, without a comma (ALGORITHM=INSTANT is accepted there and
        # not honoured: only LOCK=NONE tells), and some forms take none: a syntax error, taken as a refusal.
        head = sql[:alter.start(2)]
        return [(f"{head}LOCK=NONE {alter.group(2)}", "inplace"), (sql, "locking")]
    if alter:
        head = sql[:alter.start(2)]
        return [(f"{head}ALGORITHM=INSTANT, {alter.group(2)}", "instant"),
                (f"{head}ALGORITHM=INPLACE, LOCK=NONE, {alter.group(2)}", "inplace"), (sql, "locking")]
    if _CREATE_INDEX.match(sql):
        return [(f"{sql} ALGORITHM=INSTANT", "instant"), (f"{sql} ALGORITHM=INPLACE LOCK=NONE", "inplace"),
                (sql, "locking")]
    return None


class Server:
    """Runs corpus statements on a MariaDB server reached on a Unix socket (PyMySQL)."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def connect(self, database: str | None = None) -> Any:
        import pymysql
        from pymysql.constants import CLIENT

        return pymysql.connect(unix_socket=self.socket, user="root", database=database, autocommit=True,
                               client_flag=CLIENT.MULTI_STATEMENTS, charset="utf8mb4",
                               ssl_disabled=True)   # a Unix socket; an SSL context costs 80 ms a connection

    @contextmanager
    def database(self, name: str, tables: list[str]) -> Iterator[Any]:
        """A fresh database holding some tables of SCHEMA with their ROWS; a connection to it. It is left for the
        server's datadir to take away (dropping each one would double the time the corpus takes)."""
        with closing(self.connect()) as admin, admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        with closing(self.connect(name)) as connection:
            script = "".join(_CREATE[t] for t in tables) + "".join(_FILL[t] for t in tables)
            if script:
                _script(connection, script.strip())
            yield connection

    def verdict(self, case: Case, database: str) -> ServerVerdict:
        """What the server does with a case's statement, after the ones before it."""
        import pymysql

        tables = tables_of(" ".join((*case.before, case.sql)))
        with self.database(database, tables) as connection:
            for sql in case.before:
                _script(connection, sql)
            attempts = _attempts(case.sql)
            alter = _ALTER.match(case.sql)
            partitioning = bool(alter and _PARTITIONING.match(alter.group(2)))
            refusals = []
            how = None
            if attempts is None:
                how = self._held_open(connection, case.sql, database, tables)
            else:
                for sql, meaning in attempts:
                    try:
                        _script(connection, sql)
                    except pymysql.err.MySQLError as exc:
                        if exc.args[0] == 1064 and not partitioning:
                            raise AssertionError(f"the harness wrote bad SQL: {sql}: {exc}") from exc
                        refusals.append(f"{meaning}: {exc.args[-1]}")
                        continue
                    how = meaning
                    break
            assert how is not None, f"the server refuses {case.sql}: {refusals}"
            return ServerVerdict(how, tuple(self.release_fails(connection, tables)))

    def _held_open(self, connection: Any, sql: str, database: str, tables: list[str]) -> str:
        """Run a statement inside a transaction held open and try to lock a row of every table from a second
        session without waiting: `instant` when none is held, else `locking`. DDL commits at once (and so
        holds nothing afterwards)."""
        import pymysql

        with connection.cursor() as cursor:
            cursor.execute("START TRANSACTION")
            cursor.execute(sql)
            held = False
            with closing(self.connect(database)) as prober, prober.cursor() as probe:
                probe.execute("SET SESSION lock_wait_timeout = 1")
                for table in tables:
                    column = _LAST_ROW[table]
                    try:
                        probe.execute(f"SELECT 1 FROM {table} WHERE {column} = {ROW_COUNTS[table]} FOR UPDATE NOWAIT")
                    except pymysql.err.MySQLError as exc:
                        if exc.args[0] in (1146,):   # the statement dropped or renamed it
                            continue
                        held = True
                    probe.execute("ROLLBACK")
            cursor.execute("COMMIT")
            cursor.execute("UNLOCK TABLES")
        return "locking" if held else "instant"

    def release_fails(self, connection: Any, tables: list[str]) -> list[str]:
        """The running release's queries on these tables that fail now, and the tables that lost rows."""
        import pymysql

        failed = []
        with connection.cursor() as cursor:
            for table in tables:
                count = ROW_COUNTS[table]
                try:
                    cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE 1 = 1")
                    (now,) = cursor.fetchone()
                except pymysql.err.MySQLError as exc:
                    failed.append(f"{table}: {exc.args[-1]}")
                    continue
                if now < count:
                    failed.append(f"{table}: {count - now} of its rows are gone")
            for sql in RELEASE:
                if not set(tables_of(sql)) <= set(tables):
                    continue
                try:
                    cursor.execute("START TRANSACTION")
                    cursor.execute(sql)
                    cursor.fetchall()
                except pymysql.err.MySQLError as exc:
                    failed.append(f"{sql[:60]}: {exc.args[-1]}")
                finally:
                    cursor.execute("ROLLBACK")
        return failed


def _script(connection: Any, sql: str) -> None:
    """Run one or more statements; every result read (so that an error in any of them is raised)."""
    with connection.cursor() as cursor:
        cursor.execute(sql)
        while cursor.nextset():
            pass
