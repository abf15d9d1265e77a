"""The linter's MariaDB verdicts, checked against a real MariaDB server (Debian's mariadb-server).

For every statement the linter claims runs INSTANT, the server must accept it with ALGORITHM=INSTANT; for
every one it claims runs in place, with ALGORITHM=INPLACE, LOCK=NONE; for every one it claims copies the
table (or blocks writes), the server must refuse ALGORITHM=INPLACE, LOCK=NONE. Each statement runs on a
table with rows, in a database of its own, after the migration history the linter was given.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mariadbserver import MariaDB, running

from conveyor.migrations.lint import judge_sql
from conveyor.migrations.sqlschema import Schema

pytestmark = pytest.mark.integration


HISTORY = """
CREATE TABLE orders (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'new',
  note VARCHAR(100) NULL,
  code VARCHAR(40) CHARACTER SET latin1 NULL,
  title VARCHAR(200) CHARACTER SET latin1 NULL,
  amount DECIMAL(10,2) NOT NULL DEFAULT 0,
  qty INT NOT NULL DEFAULT 0,
  kind ENUM('a','b') NOT NULL DEFAULT 'a',
  KEY idx_status (status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE customers (id BIGINT NOT NULL PRIMARY KEY, email VARCHAR(255) NOT NULL)
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE events (id BIGINT NOT NULL, kind VARCHAR(10) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=latin1;
CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, body TEXT, FULLTEXT KEY ft_body (body))
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
"""

ROWS = """
INSERT INTO customers (id, email) VALUES {customers};
INSERT INTO orders (customer_id, status, note, code, amount, qty) VALUES {orders};
INSERT INTO events (id, kind) VALUES {events};
""".format(
    customers=", ".join(f"({i}, 'c{i}@example.com')" for i in range(1, 51)),
    orders=", ".join(f"({i % 50 + 1}, 'new', 'note {i}', 'C{i}', {i}.50, {i})" for i in range(1, 201)),
    events=", ".join(f"({i}, 'k{i % 7}')" for i in range(1, 101)),
)

# Statements whose claimed algorithm the server checks: safe ones, and needs-window ones said to copy or lock.
STATEMENTS = [
    "ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL",
    "ALTER TABLE orders ADD COLUMN flags INT NOT NULL DEFAULT 0",
    "ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL AFTER id",
    "ALTER TABLE orders ADD COLUMN doubled INT AS (qty * 2) VIRTUAL",
    "ALTER TABLE orders ADD INDEX idx_customer (customer_id)",
    "CREATE INDEX idx_amount ON orders (amount)",
    "ALTER TABLE orders DROP INDEX idx_status",
    "ALTER TABLE orders RENAME INDEX idx_status TO idx_state",
    "ALTER TABLE orders MODIFY note VARCHAR(200) NULL",
    "ALTER TABLE orders MODIFY status VARCHAR(60) NOT NULL DEFAULT 'new'",
    "ALTER TABLE orders MODIFY status VARCHAR(100) NOT NULL DEFAULT 'new'",
    "ALTER TABLE orders MODIFY code VARCHAR(200) CHARACTER SET latin1 NULL",
    "ALTER TABLE orders MODIFY kind ENUM('a','b','c') NOT NULL DEFAULT 'a'",
    "ALTER TABLE orders MODIFY note VARCHAR(100) NULL AFTER id",
    "ALTER TABLE orders MODIFY customer_id BIGINT NULL",
    "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'open'",
    "ALTER TABLE orders ALTER COLUMN note DROP DEFAULT",
    "ALTER TABLE orders COMMENT = 'customer orders'",
    "ALTER TABLE orders AUTO_INCREMENT = 5000",
    "ALTER TABLE orders DEFAULT CHARSET = latin1",
    "ALTER TABLE customers ADD UNIQUE KEY uq_email (email)",
    "ALTER TABLE events ADD PRIMARY KEY (id)",
    "ALTER TABLE orders ENGINE = InnoDB",
    "ALTER TABLE orders FORCE",
    "ALTER TABLE orders MODIFY note VARCHAR(100) NOT NULL",
    # claimed to copy, or to block writes: INPLACE, LOCK=NONE must be refused
    "ALTER TABLE orders MODIFY qty BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE orders MODIFY note VARCHAR(60) NULL",
    "ALTER TABLE events MODIFY kind VARCHAR(300) NOT NULL",
    "ALTER TABLE orders MODIFY title VARCHAR(300) CHARACTER SET latin1 NULL",
    "ALTER TABLE orders MODIFY note VARCHAR(100) CHARACTER SET latin1 NULL",
    "ALTER TABLE orders ADD COLUMN doubled INT AS (qty * 2) STORED",
    "ALTER TABLE events ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE",
    "ALTER TABLE orders ADD FULLTEXT INDEX ft_note (note)",
    "ALTER TABLE orders ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id)",
    "ALTER TABLE customers DROP PRIMARY KEY",
    "ALTER TABLE events CONVERT TO CHARACTER SET utf8mb4",
    "ALTER TABLE orders ADD CONSTRAINT chk_qty CHECK (qty >= 0)",
    "ALTER TABLE orders ORDER BY amount",
    # a table with a FULLTEXT index is rebuilt in place only while writes wait
    "ALTER TABLE docs ADD COLUMN title VARCHAR(50) NULL",
    # without CHARACTER SET, a latin1 column of a utf8mb4 table becomes utf8mb4: re-encoded, copied
    "ALTER TABLE orders MODIFY code VARCHAR(60) NULL",
]


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    with running(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


def _claim(sql: str, version: str) -> tuple[str, str | None]:
    schema = Schema()
    judge_sql(HISTORY, "mariadb", version, "expand", path="0001_history.sql", schema=schema)
    verdict = judge_sql(sql + ";", "mariadb", version, "expand", path="0002.sql", schema=schema)
    (statement,) = verdict.statements
    return statement.cls, statement.algorithm


def _with_algorithm(sql: str, algorithm: str) -> str:
    """The statement with an ALGORITHM/LOCK clause: after CREATE INDEX, first among ALTER TABLE's actions."""
    if sql.upper().startswith("CREATE"):
        return f"{sql} {algorithm.replace(',', '')}"
    alter, table_word, table, actions = sql.split(" ", 3)  # ALTER TABLE name actions...
    return f"{alter} {table_word} {table} {algorithm}, {actions}"


@pytest.mark.parametrize("sql", STATEMENTS, ids=[s[:70] for s in STATEMENTS])
def test_the_server_agrees_with_the_claimed_algorithm(mariadb: MariaDB, sql: str) -> None:
    cls, algorithm = _claim(sql, mariadb.version)
    assert algorithm is not None, f"no algorithm claimed for {sql}"
    if cls == "safe":
        assert algorithm in ("instant", "inplace"), (cls, algorithm)
    database = f"t{abs(hash(sql)) % 10**12}"
    setup = mariadb.run(f"DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database} CHARACTER SET utf8mb4;")
    assert setup.returncode == 0, setup.stderr
    loaded = mariadb.run(HISTORY + ROWS, database)
    assert loaded.returncode == 0, loaded.stderr
    if algorithm in ("instant", "inplace"):
        clause = "ALGORITHM=INSTANT" if algorithm == "instant" else "ALGORITHM=INPLACE, LOCK=NONE"
        done = mariadb.run(_with_algorithm(sql, clause), database)
        assert done.returncode == 0, f"{cls} {algorithm}: the server refused {clause}: {done.stderr}"
    else:
        done = mariadb.run(_with_algorithm(sql, "ALGORITHM=INPLACE, LOCK=NONE"), database)
        assert done.returncode != 0, f"{cls} {algorithm}: the server ran it with ALGORITHM=INPLACE, LOCK=NONE"
        assert "not supported" in done.stderr, done.stderr
        plain = mariadb.run(sql, database)
        assert plain.returncode == 0, f"the statement itself fails: {plain.stderr}"
    mariadb.run(f"DROP DATABASE {database}")


def test_every_safe_verdict_in_the_list_is_checked(mariadb: MariaDB) -> None:
    classes = [_claim(sql, mariadb.version)[0] for sql in STATEMENTS]
    assert classes.count("safe") >= 15
    assert classes.count("needs-window") >= 10
