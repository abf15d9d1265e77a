"""The migration linter: each statement's class and rule, by dialect and server version; statements split
with their lines; phases; squawk's findings mapped (when squawk is installed) and its absence noted."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.errors import UsageError
from conveyor.migrations.lint import document, judge_file, judge_files, judge_sql, migration_phase, sql_files
from conveyor.migrations.sqlschema import Schema
from conveyor.migrations.squawk import find_squawk
from conveyor.migrations.statements import split_statements

MYSQL_HISTORY = """
CREATE TABLE orders (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'new',
  note VARCHAR(100) NULL,
  code VARCHAR(40) CHARACTER SET latin1 NULL,
  amount DECIMAL(10,2) NOT NULL,
  qty INT NOT NULL DEFAULT 0,
  kind ENUM('a','b') NOT NULL DEFAULT 'a',
  created_at DATETIME NOT NULL,
  KEY idx_status (status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE customers (id BIGINT NOT NULL PRIMARY KEY, email VARCHAR(255) NOT NULL) DEFAULT CHARSET=utf8mb4;
CREATE TABLE events (id BIGINT NOT NULL, kind VARCHAR(10) NOT NULL) DEFAULT CHARSET=utf8mb4;
CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, body TEXT, FULLTEXT KEY ft_body (body)) DEFAULT CHARSET=utf8mb4;
CREATE TABLE tags (id BIGINT NOT NULL, label VARCHAR(30) NULL, UNIQUE KEY uq_id (id)) DEFAULT CHARSET=utf8mb3;
CREATE TABLE visits (day DATE NOT NULL, page VARCHAR(100) NOT NULL, PRIMARY KEY (day, page)) DEFAULT CHARSET=latin1
  PARTITION BY RANGE COLUMNS (day) (PARTITION p1 VALUES LESS THAN ('2026-01-01'),
                                    PARTITION p2 VALUES LESS THAN (MAXVALUE));
"""

PG_HISTORY = """
CREATE TABLE accounts (
  id bigint PRIMARY KEY,
  email varchar(100) NOT NULL,
  name text,
  balance numeric(12,2) NOT NULL DEFAULT 0,
  status varchar(20) NOT NULL DEFAULT 'active',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE teams (id bigint PRIMARY KEY, title text);
CREATE TYPE mood AS ENUM ('happy', 'sad');
"""


def last(sql: str, dialect: str, version: str | None = None, *, history: str = "", phase: str = "expand",
         squawk: bool | str = False, transaction: str | None = None):
    """The verdict on the last statement of `sql`, judged after a history migration."""
    schema = Schema()
    if history:
        judge_sql(history, dialect, version, "expand", path="0001_history.sql", schema=schema, squawk=False)
    verdict = judge_sql(sql, dialect, version, phase, path="0002_change.sql", schema=schema,  # type: ignore[arg-type]
                        squawk=squawk, transaction=transaction)
    assert verdict.statements, "no statement found"
    return verdict.statements[-1]


def check(statement, cls: str, rule: str | None) -> None:
    rules = [f.rule for f in statement.findings]
    assert statement.cls == cls, (statement.statement, [(f.rule, f.cls, f.message) for f in statement.findings])
    if rule is None:
        assert rules == [], rules
    else:
        assert rule in rules, rules


MYSQL_CASES = [
    # column additions
    ("ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL", "safe", "mysql.add-column"),
    ("ALTER TABLE orders ADD remark VARCHAR(50)", "safe", "mysql.add-column"),
    ("ALTER TABLE orders ADD COLUMN flags INT NOT NULL DEFAULT 0", "safe", "mysql.add-column"),
    ("ALTER TABLE orders ADD COLUMN flags INT NOT NULL", "breaking", "mysql.add-column-not-null-no-default"),
    ("ALTER TABLE orders ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE", "needs-window",
     "mysql.add-auto-increment-column"),
    ("ALTER TABLE orders ADD COLUMN doubled INT AS (qty * 2) STORED", "needs-window",
     "mysql.add-stored-generated-column"),
    ("ALTER TABLE orders ADD COLUMN doubled INT AS (qty * 2) VIRTUAL", "safe", "mysql.add-virtual-column"),
    ("ALTER TABLE orders ADD COLUMN a INT NULL, ADD COLUMN b INT NULL", "safe", "mysql.add-column"),
    # a DEFAULT computed row by row copies the table; one the server evaluates once does not
    ("ALTER TABLE orders ADD COLUMN token CHAR(36) NULL DEFAULT (uuid())", "needs-window",
     "mysql.add-column-volatile-default"),
    ("ALTER TABLE orders ADD COLUMN twice INT NULL DEFAULT (qty * 2)", "needs-window",
     "mysql.add-column-volatile-default"),
    ("ALTER TABLE orders ADD COLUMN seen_at DATETIME NULL DEFAULT (now())", "safe", "mysql.add-column"),
    # a VIRTUAL column with an index on it in the same ALTER: not online
    ("ALTER TABLE orders ADD COLUMN doubled INT AS (qty * 2) VIRTUAL, ADD INDEX idx_doubled (doubled)",
     "needs-window", "mysql.add-virtual-column-combined"),
    # drops and renames: the running release still uses them
    ("ALTER TABLE orders DROP COLUMN note", "breaking", "mysql.drop-column"),
    ("ALTER TABLE orders DROP note", "breaking", "mysql.drop-column"),
    ("DROP TABLE customers", "breaking", "mysql.drop-table"),
    ("DROP TABLE IF EXISTS customers, events", "breaking", "mysql.drop-table"),
    ("DROP TEMPORARY TABLE scratch", "safe", None),
    ("RENAME TABLE customers TO clients", "breaking", "mysql.rename-table"),
    ("ALTER TABLE orders RENAME TO purchases", "breaking", "mysql.rename-table"),
    ("ALTER TABLE orders RENAME COLUMN note TO remark", "breaking", "mysql.rename-column"),
    ("ALTER TABLE orders CHANGE COLUMN note remark VARCHAR(100) NULL", "breaking", "mysql.rename-column"),
    ("TRUNCATE TABLE orders", "breaking", "mysql.truncate-table"),
    ("DROP VIEW order_totals", "breaking", "mysql.drop-object"),
    # type changes, judged against the history's definition
    ("ALTER TABLE orders MODIFY note VARCHAR(200) NULL", "safe", "mysql.widen-varchar"),
    ("ALTER TABLE orders MODIFY COLUMN status VARCHAR(60) NOT NULL DEFAULT 'new'", "safe", "mysql.widen-varchar"),
    ("ALTER TABLE orders MODIFY status VARCHAR(100) NOT NULL DEFAULT 'new'", "needs-window",
     "mysql.widen-varchar-copy"),
    ("ALTER TABLE orders MODIFY code VARCHAR(200) CHARACTER SET latin1 NULL", "safe", "mysql.widen-varchar"),
    ("ALTER TABLE orders MODIFY code VARCHAR(300) CHARACTER SET latin1 NULL", "needs-window",
     "mysql.widen-varchar-copy"),
    ("ALTER TABLE orders CHANGE note note VARCHAR(150) NULL", "safe", "mysql.widen-varchar"),
    ("ALTER TABLE orders MODIFY note VARCHAR(60) NULL", "breaking", "mysql.narrow-column-type"),
    ("ALTER TABLE orders MODIFY qty BIGINT NOT NULL DEFAULT 0", "needs-window", "mysql.change-column-type"),
    ("ALTER TABLE orders MODIFY qty SMALLINT NOT NULL DEFAULT 0", "breaking", "mysql.narrow-column-type"),
    ("ALTER TABLE orders MODIFY qty VARCHAR(10) NOT NULL", "breaking", "mysql.narrow-column-type"),
    ("ALTER TABLE orders MODIFY amount DECIMAL(12,2) NOT NULL", "needs-window", "mysql.change-column-type"),
    ("ALTER TABLE orders MODIFY note VARCHAR(100) NOT NULL", "breaking", "mysql.set-not-null"),
    ("ALTER TABLE orders MODIFY note VARCHAR(100) NOT NULL DEFAULT ''", "breaking", "mysql.set-not-null"),
    ("ALTER TABLE orders CHANGE note note VARCHAR(100) NOT NULL DEFAULT ''", "breaking", "mysql.set-not-null"),
    ("ALTER TABLE orders MODIFY customer_id BIGINT NULL", "safe", "mysql.drop-not-null"),
    ("ALTER TABLE orders MODIFY kind ENUM('a','b','c') NOT NULL DEFAULT 'a'", "safe", "mysql.extend-enum"),
    ("ALTER TABLE orders MODIFY kind ENUM('a') NOT NULL DEFAULT 'a'", "breaking", "mysql.narrow-column-type"),
    ("ALTER TABLE orders MODIFY note VARCHAR(100) NULL AFTER status", "safe", "mysql.reorder-column"),
    ("ALTER TABLE orders MODIFY note VARCHAR(100) CHARACTER SET latin1 NULL", "needs-window",
     "mysql.change-column-charset"),
    ("ALTER TABLE ledger MODIFY total BIGINT NOT NULL", "needs-window", "mysql.modify-column-unknown"),
    ("ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'open'", "safe", "mysql.set-default"),
    ("ALTER TABLE orders ALTER COLUMN qty DROP DEFAULT", "breaking", "mysql.drop-default-not-null"),
    ("ALTER TABLE orders ALTER COLUMN note DROP DEFAULT", "safe", "mysql.set-default"),
    ("ALTER TABLE orders ALTER COLUMN kind DROP DEFAULT", "safe", "mysql.set-default"),   # an ENUM: first member
    ("ALTER TABLE orders ADD COLUMN score INT NOT NULL DEFAULT 0, ALTER COLUMN score DROP DEFAULT", "breaking",
     "mysql.drop-default-not-null"),
    ("ALTER TABLE orders ADD COLUMN score INT NOT NULL DEFAULT 0;\nALTER TABLE orders ALTER COLUMN score DROP DEFAULT",
     "breaking", "mysql.drop-default-not-null"),
    ("ALTER TABLE orders ADD COLUMN score INT NOT NULL DEFAULT 0;\nALTER TABLE orders MODIFY score INT NOT NULL",
     "breaking", "mysql.drop-default-not-null"),
    # indexes and keys
    ("ALTER TABLE orders ADD INDEX idx_customer (customer_id)", "safe", "mysql.add-index"),
    ("CREATE INDEX idx_created ON orders (created_at)", "safe", "mysql.add-index"),
    ("CREATE INDEX idx_created ON orders (created_at) ALGORITHM=INPLACE LOCK=NONE", "safe", "mysql.add-index"),
    ("ALTER TABLE orders DROP INDEX idx_status", "safe", "mysql.drop-index"),
    ("DROP INDEX idx_status ON orders", "safe", "mysql.drop-index"),
    ("ALTER TABLE orders RENAME INDEX idx_status TO idx_state", "safe", "mysql.rename-index"),
    ("CREATE UNIQUE INDEX uq_email ON customers (email)", "safe", "mysql.add-unique-index"),
    ("ALTER TABLE customers ADD UNIQUE KEY uq_email (email)", "safe", "mysql.add-unique-index"),
    ("ALTER TABLE customers ADD CONSTRAINT uq_email UNIQUE (email)", "safe", "mysql.add-unique-index"),
    ("ALTER TABLE docs DROP INDEX ft_body", "breaking", "mysql.drop-fulltext-index"),
    ("DROP INDEX ft_body ON docs", "breaking", "mysql.drop-fulltext-index"),
    ("ALTER TABLE tags DROP INDEX uq_id", "needs-window", "mysql.drop-clustered-index"),
    ("ALTER TABLE orders ADD FULLTEXT INDEX ft_note (note)", "needs-window", "mysql.add-fulltext-index"),
    ("ALTER TABLE events ADD PRIMARY KEY (id)", "safe", "mysql.add-primary-key"),
    ("ALTER TABLE tags ADD PRIMARY KEY (label)", "breaking", "mysql.add-primary-key-nullable"),
    ("ALTER TABLE orders DROP PRIMARY KEY, ADD PRIMARY KEY (id)", "safe", "mysql.add-primary-key"),
    ("ALTER TABLE docs ADD COLUMN n INT NOT NULL DEFAULT 0, DROP PRIMARY KEY, ADD PRIMARY KEY (id, n)",
     "needs-window", "mysql.add-primary-key"),
    ("ALTER TABLE ledger ADD PRIMARY KEY (id)", "needs-window", "mysql.add-primary-key"),
    ("ALTER TABLE orders DROP PRIMARY KEY", "needs-window", "mysql.drop-primary-key"),
    ("ALTER TABLE orders ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id)",
     "needs-window", "mysql.add-foreign-key"),
    ("SET foreign_key_checks = 0;\nALTER TABLE orders ADD CONSTRAINT fk_customer FOREIGN KEY (customer_id) "
     "REFERENCES customers (id)", "safe", "mysql.add-foreign-key-unchecked"),
    ("ALTER TABLE orders DROP FOREIGN KEY fk_customer", "safe", "mysql.drop-constraint"),
    ("ALTER TABLE orders ADD CONSTRAINT chk_qty CHECK (qty >= 0)", "breaking", "mysql.add-check-constraint"),
    # table rebuilds
    ("ALTER TABLE orders CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", "needs-window",
     "mysql.convert-charset"),
    ("ALTER TABLE orders ENGINE=InnoDB", "safe", "mysql.rebuild-table-online"),
    ("ALTER TABLE orders FORCE", "safe", "mysql.rebuild-table-online"),
    ("ALTER TABLE orders ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8", "safe", "mysql.rebuild-table-online"),
    ("OPTIMIZE TABLE orders", "safe", "mysql.optimize-table-online"),
    ("ALTER TABLE docs FORCE", "needs-window", "mysql.rebuild-table"),          # a FULLTEXT index: writes wait
    ("OPTIMIZE TABLE docs", "needs-window", "mysql.optimize-table"),
    ("ALTER TABLE ledger ENGINE=InnoDB", "needs-window", "mysql.rebuild-table"),  # its indexes are unknown
    ("ALTER TABLE orders ENGINE=MyISAM", "needs-window", "mysql.rebuild-table"),
    ("ALTER TABLE orders COMMENT = 'customer orders'", "safe", "mysql.table-option"),
    ("ALTER TABLE orders AUTO_INCREMENT = 1000", "safe", "mysql.table-option"),
    ("ALTER TABLE orders ORDER BY created_at", "safe", "mysql.order-by"),       # InnoDB ignores it
    ("ALTER TABLE ledger ORDER BY created_at", "needs-window", "mysql.order-by"),
    # explicit clauses
    ("ALTER TABLE orders ADD COLUMN x INT NULL, ALGORITHM=COPY", "needs-window", "mysql.algorithm-copy"),
    ("ALTER TABLE orders ADD COLUMN x INT NULL, LOCK=EXCLUSIVE", "needs-window", "mysql.explicit-lock"),
    ("ALTER TABLE orders MODIFY qty BIGINT NOT NULL DEFAULT 0, ALGORITHM=INPLACE", "needs-window",
     "mysql.algorithm-refused"),
    ("ALTER TABLE orders ADD COLUMN x INT NULL, ALGORITHM=INSTANT", "safe", "mysql.add-column"),
    ("LOCK TABLES orders WRITE", "needs-window", "mysql.lock-tables"),
    # data changes
    ("UPDATE orders SET qty = 0", "needs-window", "mysql.unbounded-dml"),
    ("UPDATE orders SET qty = 0 WHERE id BETWEEN 1 AND 10000", "safe", None),
    ("UPDATE orders SET qty = 0 LIMIT 1000", "safe", None),
    ("DELETE FROM orders", "breaking", "mysql.delete-all-rows"),
    ("DELETE FROM orders WHERE created_at < '2020-01-01'", "safe", None),
    ("INSERT INTO customers (id, email) VALUES (1, 'a@example.com')", "safe", None),
    ("INSERT INTO events (id, kind) SELECT id, status FROM orders", "needs-window", "mysql.unbounded-dml"),
    ("LOAD DATA INFILE '/tmp/orders.csv' INTO TABLE orders", "needs-window", "mysql.load-data"),
    # new objects and harmless statements
    ("CREATE TABLE refunds (id BIGINT NOT NULL PRIMARY KEY, order_id BIGINT NOT NULL)", "safe", None),
    ("CREATE TABLE refunds LIKE orders", "safe", None),
    ("CREATE TABLE refunds AS SELECT * FROM orders", "needs-window", "mysql.create-table-select"),
    ("CREATE OR REPLACE VIEW order_totals AS SELECT customer_id, SUM(amount) FROM orders GROUP BY customer_id",
     "safe", None),
    ("SET NAMES utf8mb4", "safe", None),
    ("SELECT COUNT(*) FROM orders", "safe", None),
    ("START TRANSACTION", "safe", None),
    # a table created by the same migration: nothing uses it yet
    ("CREATE TABLE refunds (id BIGINT NOT NULL);\nALTER TABLE refunds ADD COLUMN amount INT NOT NULL",
     "safe", "mysql.new-table"),
    ("CREATE TABLE refunds (id BIGINT NOT NULL);\nCREATE UNIQUE INDEX uq ON refunds (id)", "safe",
     "mysql.new-table"),
    ("CREATE TABLE refunds (id BIGINT NOT NULL);\nDROP TABLE refunds", "safe", "mysql.new-table"),
    # what cannot be read is needs-window, never silently safe
    ("ALTER TABLE orders FROBNICATE THE THING", "needs-window", "unparsed"),
    ("ALTER TABLE orders ADD COLUMN broken VARCHAR(", "needs-window", "unparsed"),
    ("FLIBBLE WOBBLE orders", "needs-window", "unparsed"),
    ("CALL backfill_orders()", "needs-window", "unparsed"),
    ("INSERT INTO orders VALUES (", "needs-window", "unparsed"),
    ("DELIMITER //\nCREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW BEGIN SET NEW.qty = 1; END//\n"
     "DELIMITER ;", "needs-window", "unparsed"),
    ("UPDATE orders SET note = 'never closed", "needs-window", "unparsed"),
]


@pytest.mark.parametrize(("sql", "cls", "rule"), MYSQL_CASES, ids=[c[0][:60] for c in MYSQL_CASES])
def test_mysql_statement_classes(sql: str, cls: str, rule: str | None) -> None:
    check(last(sql, "mysql", "8.0.35", history=MYSQL_HISTORY), cls, rule)


MARIADB_CASES = [
    # (version, sql, class, rule, algorithm the server is said to use)
    ("10.3.1", "ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL", "safe", "mysql.add-column", "inplace"),
    ("10.3.2", "ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL", "safe", "mysql.add-column", "instant"),
    ("10.3.9", "ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL AFTER id", "safe", "mysql.add-column",
     "inplace"),
    ("10.4.2", "ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL AFTER id", "safe", "mysql.add-column",
     "instant"),
    ("10.11.6-MariaDB-0+deb12u1", "ALTER TABLE orders DROP COLUMN note", "breaking", "mysql.drop-column",
     "instant"),
    ("10.3.9", "ALTER TABLE orders DROP COLUMN note", "breaking", "mysql.drop-column", "inplace"),
    # status is VARCHAR(20) utf8mb4 = 80 bytes: under 128, MariaDB 10.4.3+ may grow it past 255 bytes
    ("10.11", "ALTER TABLE orders MODIFY status VARCHAR(100) NOT NULL DEFAULT 'new'", "safe", "mysql.widen-varchar",
     "instant"),
    ("10.3.9", "ALTER TABLE orders MODIFY status VARCHAR(100) NOT NULL DEFAULT 'new'", "needs-window",
     "mysql.widen-varchar-copy", "copy"),
    ("10.11", "ALTER TABLE orders MODIFY note VARCHAR(100) NULL AFTER status", "safe", "mysql.reorder-column",
     "instant"),
    ("10.11", "ALTER TABLE orders ADD FULLTEXT INDEX ft_note (note)", "needs-window", "mysql.add-fulltext-index",
     "inplace-locked"),
    ("10.11", "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id)",
     "needs-window", "mysql.add-foreign-key", "copy"),
    ("5.5", "ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL", "needs-window", "mysql.no-online-ddl", "copy"),
    # collations and utf8mb3 to utf8mb4 without a copy (MariaDB 10.4+; an indexed column rebuilt in place, 10.6+)
    ("10.11", "ALTER TABLE orders MODIFY note VARCHAR(100) COLLATE utf8mb4_unicode_ci NULL", "safe",
     "mysql.change-column-collation", "instant"),
    ("10.11", "ALTER TABLE orders MODIFY status VARCHAR(20) COLLATE utf8mb4_bin NOT NULL DEFAULT 'new'", "safe",
     "mysql.change-column-collation", "inplace"),
    ("10.5", "ALTER TABLE orders MODIFY status VARCHAR(20) COLLATE utf8mb4_bin NOT NULL DEFAULT 'new'",
     "needs-window", "mysql.change-column-collation", "copy"),
    ("10.11", "ALTER TABLE orders MODIFY kind ENUM('a','b') COLLATE utf8mb4_bin NOT NULL DEFAULT 'a'",
     "needs-window", "mysql.change-column-collation", "copy"),
    ("10.11", "ALTER TABLE tags MODIFY label VARCHAR(30) CHARACTER SET utf8mb4 NULL", "safe",
     "mysql.change-column-charset-online", "instant"),
    ("10.3.9", "ALTER TABLE tags MODIFY label VARCHAR(30) CHARACTER SET utf8mb4 NULL", "needs-window",
     "mysql.change-column-charset", "copy"),
    ("10.11", "ALTER TABLE tags CONVERT TO CHARACTER SET utf8mb4", "safe", "mysql.convert-charset-online",
     "instant"),
    ("10.11", "ALTER TABLE customers CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", "safe",
     "mysql.convert-charset-online", "instant"),    # no index on a string column
    ("10.11", "ALTER TABLE customers ADD INDEX idx_email (email);\n"
     "ALTER TABLE customers CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", "safe",
     "mysql.convert-charset-online", "inplace"),
    ("10.11", "ALTER TABLE orders CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", "needs-window",
     "mysql.convert-charset", "copy"),    # kind is an ENUM
    ("10.11", "ALTER TABLE visits CONVERT TO CHARACTER SET utf8mb4", "needs-window", "mysql.convert-charset", "copy"),
    # a partitioned table is known from its CREATE TABLE
    ("10.11", "ALTER TABLE visits MODIFY page VARCHAR(50) NOT NULL", "breaking", "mysql.narrow-column-type", "copy"),
]


@pytest.mark.parametrize(("version", "sql", "cls", "rule", "algorithm"), MARIADB_CASES,
                         ids=[f"{c[0]}: {c[1][:50]}" for c in MARIADB_CASES])
def test_mariadb_statement_classes_by_version(version: str, sql: str, cls: str, rule: str, algorithm: str) -> None:
    statement = last(sql, "mariadb", version, history=MYSQL_HISTORY)
    check(statement, cls, rule)
    assert statement.algorithm == algorithm


@pytest.mark.parametrize(("version", "algorithm"), [("8.0.11", "inplace"), ("8.0.12", "instant"),
                                                    ("5.7.44", "inplace"), (None, "instant")])
def test_mysql_add_column_is_instant_from_8_0_12(version: str | None, algorithm: str) -> None:
    statement = last("ALTER TABLE orders ADD COLUMN remark VARCHAR(50) NULL", "mysql", version,
                     history=MYSQL_HISTORY)
    check(statement, "safe", "mysql.add-column")
    assert statement.algorithm == algorithm


def test_mysql_widening_without_a_known_charset_must_agree_for_every_charset() -> None:
    history = "CREATE TABLE t (a VARCHAR(50) NULL, b VARCHAR(300) NULL, c VARCHAR(20) NULL);"
    # 50 chars: 50 bytes in latin1 but 200 in utf8mb4; 80 chars crosses 255 bytes in utf8mb4 only.
    check(last("ALTER TABLE t MODIFY a VARCHAR(80) NULL", "mysql", "8.0.35", history=history), "needs-window",
          "mysql.widen-varchar-copy")
    check(last("ALTER TABLE t MODIFY b VARCHAR(400) NULL", "mysql", "8.0.35", history=history), "safe",
          "mysql.widen-varchar")
    check(last("ALTER TABLE t MODIFY c VARCHAR(60) NULL", "mysql", "8.0.35", history=history), "safe",
          "mysql.widen-varchar")


PG_CASES = [
    ("ALTER TABLE accounts ADD COLUMN note text", "safe", "pg.add-column"),
    ("ALTER TABLE accounts ADD COLUMN active boolean NOT NULL DEFAULT true", "safe", "pg.add-column"),
    ("ALTER TABLE accounts ADD COLUMN seen_at timestamptz DEFAULT now()", "safe", "pg.add-column"),
    ("ALTER TABLE accounts ADD COLUMN active boolean NOT NULL", "breaking", "pg.add-column-not-null-no-default"),
    ("ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid()", "needs-window",
     "pg.add-column-volatile-default"),
    ("ALTER TABLE accounts ADD COLUMN seq bigserial", "needs-window", "pg.add-column-generated"),
    ("ALTER TABLE accounts ADD COLUMN n int GENERATED ALWAYS AS IDENTITY", "needs-window",
     "pg.add-column-generated"),
    ("ALTER TABLE accounts ADD COLUMN team_id bigint REFERENCES teams (id)", "safe", "pg.add-column-foreign-key"),
    ("ALTER TABLE accounts ADD COLUMN team_id bigint DEFAULT 1 REFERENCES teams (id)", "needs-window",
     "pg.add-foreign-key"),
    ("ALTER TABLE accounts DROP COLUMN name", "breaking", "pg.drop-column"),
    ("ALTER TABLE accounts DROP COLUMN IF EXISTS name CASCADE", "breaking", "pg.drop-column"),
    ("DROP TABLE accounts", "breaking", "pg.drop-table"),
    ("ALTER TABLE accounts RENAME COLUMN name TO full_name", "breaking", "pg.rename-column"),
    ("ALTER TABLE accounts RENAME name TO full_name", "breaking", "pg.rename-column"),
    ("ALTER TABLE accounts RENAME TO users", "breaking", "pg.rename-table"),
    ("ALTER TABLE accounts SET SCHEMA archive", "breaking", "pg.rename-table"),
    ("ALTER TABLE accounts ALTER COLUMN name SET NOT NULL", "breaking", "pg.set-not-null"),
    ("ALTER TABLE accounts ALTER COLUMN email SET NOT NULL", "safe", "pg.set-not-null-already"),
    ("ALTER TABLE accounts ALTER COLUMN name DROP NOT NULL", "safe", "pg.drop-not-null"),
    ("ALTER TABLE accounts ALTER COLUMN status SET DEFAULT 'new'", "safe", "pg.set-default"),
    ("ALTER TABLE accounts ALTER COLUMN balance DROP DEFAULT", "breaking", "pg.drop-default-not-null"),
    ("ALTER TABLE accounts ADD COLUMN score int NOT NULL DEFAULT 0, ALTER COLUMN score DROP DEFAULT", "breaking",
     "pg.drop-default-not-null"),
    ("ALTER TABLE accounts ADD COLUMN score int DEFAULT 0 NOT NULL;\nALTER TABLE accounts ALTER COLUMN score DROP "
     "DEFAULT", "breaking", "pg.drop-default-not-null"),
    ("ALTER TABLE accounts ALTER COLUMN email TYPE varchar(200)", "safe", "pg.widen-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN email SET DATA TYPE text", "safe", "pg.widen-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN email TYPE varchar(50)", "breaking", "pg.narrow-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14,2)", "safe", "pg.widen-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN id TYPE integer", "breaking", "pg.narrow-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN status TYPE integer USING status::integer", "breaking",
     "pg.narrow-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(12,4)", "breaking", "pg.narrow-column-type"),
    ("ALTER TABLE ledger ALTER COLUMN total TYPE bigint", "needs-window", "pg.change-column-type"),
    ("CREATE INDEX accounts_email ON accounts (email)", "needs-window", "pg.create-index-blocking"),
    ("CREATE INDEX CONCURRENTLY accounts_email ON accounts (email)", "safe", "pg.create-index-concurrently"),
    ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email ON accounts USING btree (lower(email))",
     "safe", "pg.create-index-concurrently"),
    ("DROP INDEX accounts_email", "needs-window", "pg.drop-index-blocking"),
    ("DROP INDEX CONCURRENTLY IF EXISTS accounts_email", "safe", None),
    ("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (id) REFERENCES teams (id)", "needs-window",
     "pg.add-foreign-key"),
    ("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (id) REFERENCES teams (id) NOT VALID", "safe",
     "pg.add-constraint-not-valid"),
    ("ALTER TABLE accounts VALIDATE CONSTRAINT accounts_team", "safe", None),
    ("ALTER TABLE accounts ADD CONSTRAINT accounts_email UNIQUE (email)", "needs-window",
     "pg.add-unique-constraint"),
    ("ALTER TABLE accounts ADD CONSTRAINT accounts_email UNIQUE USING INDEX accounts_email_idx", "safe",
     "pg.add-constraint-using-index"),
    ("ALTER TABLE accounts ADD CONSTRAINT positive CHECK (balance >= 0)", "breaking", "pg.add-check-constraint"),
    ("ALTER TABLE accounts ADD CONSTRAINT positive CHECK (balance >= 0) NOT VALID", "breaking",
     "pg.add-check-constraint"),
    ("ALTER TABLE teams ADD PRIMARY KEY (id)", "needs-window", "pg.add-primary-key"),
    ("ALTER TABLE accounts SET TABLESPACE fast", "needs-window", "pg.rewrite-table"),
    ("ALTER TABLE accounts ADD CONSTRAINT name_nn CHECK (name IS NOT NULL) NOT VALID;\n"
     "ALTER TABLE accounts VALIDATE CONSTRAINT name_nn;\n"
     "ALTER TABLE accounts ALTER COLUMN name SET NOT NULL", "safe", "pg.set-not-null-checked"),
    ("TRUNCATE accounts", "breaking", "pg.truncate"),
    ("VACUUM FULL accounts", "needs-window", "pg.vacuum-full"),
    ("VACUUM ANALYZE accounts", "safe", None),
    ("CLUSTER accounts USING accounts_pkey", "needs-window", "pg.cluster"),
    ("REINDEX TABLE accounts", "needs-window", "pg.reindex-blocking"),
    ("REINDEX TABLE CONCURRENTLY accounts", "safe", None),
    ("REFRESH MATERIALIZED VIEW totals", "needs-window", "pg.refresh-materialized-view"),
    ("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE", "needs-window", "pg.lock-table"),
    ("UPDATE accounts SET status = 'active'", "needs-window", "pg.unbounded-dml"),
    ("UPDATE accounts SET status = 'active' WHERE id < 1000", "safe", None),
    ("DELETE FROM accounts", "breaking", "pg.delete-all-rows"),
    ("ALTER TYPE mood ADD VALUE 'meh'", "safe", "pg.add-enum-value"),
    ("ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'", "breaking", "pg.rename-object"),
    ("DROP TYPE mood", "breaking", "pg.drop-object"),
    ("DROP VIEW IF EXISTS totals", "breaking", "pg.drop-object"),
    ("CREATE TABLE audits (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())", "safe", None),
    ("CREATE TABLE audits (id bigint);\nCREATE INDEX audits_id ON audits (id)", "safe", "pg.new-table"),
    ("CREATE TABLE audits (id bigint);\nALTER TABLE audits ADD COLUMN at timestamptz NOT NULL", "safe",
     "pg.new-table"),
    ("CREATE EXTENSION IF NOT EXISTS pgcrypto", "safe", None),
    ("COMMENT ON TABLE accounts IS 'people; and teams'", "safe", None),
    ("SET lock_timeout = '2s'", "safe", None),
    ("CREATE FUNCTION touch() RETURNS trigger AS $$\nBEGIN\n  NEW.at := now();\n  RETURN NEW;\nEND;\n"
     "$$ LANGUAGE plpgsql", "safe", None),
    ("DO $$ BEGIN UPDATE accounts SET status = 'x'; END $$", "needs-window", "unparsed"),
    ("ALTER TABLE accounts TWIDDLE email", "needs-window", "unparsed"),
    ("ALTER TABLE accounts ADD COLUMN broken numeric(", "needs-window", "unparsed"),
    ("SELEKT * FROM accounts", "needs-window", "unparsed"),
    ("UPDATE accounts SET name = 'never closed", "needs-window", "unparsed"),
]


@pytest.mark.parametrize(("sql", "cls", "rule"), PG_CASES, ids=[c[0][:60] for c in PG_CASES])
def test_postgres_statement_classes_by_our_own_rules(sql: str, cls: str, rule: str | None) -> None:
    check(last(sql, "postgresql", "16", history=PG_HISTORY, transaction="none"), cls, rule)


PG_TRANSACTION_CASES = [
    # (sql, transaction, class, rule): a runner that wraps each file in a transaction (per-file, the default)
    ("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (id) REFERENCES teams (id) NOT VALID;\n"
     "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_team", None, "needs-window", "pg.validate-in-transaction"),
    ("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (id) REFERENCES teams (id) NOT VALID;\n"
     "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_team", "none", "safe", None),
    ("BEGIN;\nALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (id) REFERENCES teams (id) NOT VALID;\n"
     "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_team", "none", "needs-window", "pg.validate-in-transaction"),
    ("ALTER TABLE accounts ADD CONSTRAINT accounts_team FOREIGN KEY (id) REFERENCES teams (id) NOT VALID;\n"
     "COMMIT;\nBEGIN;\nALTER TABLE accounts VALIDATE CONSTRAINT accounts_team", None, "safe", None),
    ("ALTER TABLE accounts VALIDATE CONSTRAINT accounts_team", None, "safe", None),   # added by an earlier file
    ("CREATE INDEX CONCURRENTLY accounts_email ON accounts (email)", None, "needs-window",
     "pg.concurrently-in-transaction"),
    ("-- conveyor: no-transaction\nCREATE INDEX CONCURRENTLY accounts_email ON accounts (email)", None, "safe",
     "pg.create-index-concurrently"),
    ("DROP INDEX CONCURRENTLY accounts_email", "per-file", "needs-window", "pg.concurrently-in-transaction"),
    ("REINDEX TABLE CONCURRENTLY accounts", None, "needs-window", "pg.concurrently-in-transaction"),
    ("VACUUM ANALYZE accounts", None, "needs-window", "pg.concurrently-in-transaction"),
    ("CREATE INDEX CONCURRENTLY accounts_email ON accounts (email)", "none", "safe", "pg.create-index-concurrently"),
]


@pytest.mark.parametrize(("sql", "transaction", "cls", "rule"), PG_TRANSACTION_CASES,
                         ids=[f"{c[1]}: {c[0][:60]}" for c in PG_TRANSACTION_CASES])
def test_postgres_files_run_in_one_transaction_by_default(sql: str, transaction: str | None, cls: str,
                                                          rule: str | None) -> None:
    check(last(sql, "postgresql", "16", history=PG_HISTORY, transaction=transaction), cls, rule)


def test_an_unknown_transaction_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="per-file, none"):
        judge_sql("SELECT 1;", "postgresql", "16", "expand", transaction="nested", squawk=False)


@pytest.mark.parametrize(("version", "cls", "rule"), [("10", "needs-window", "pg.add-column-default-rewrite"),
                                                      ("11", "safe", "pg.add-column")])
def test_postgres_constant_default_rewrites_before_11(version: str, cls: str, rule: str) -> None:
    check(last("ALTER TABLE accounts ADD COLUMN active boolean DEFAULT false", "postgresql", version,
               history=PG_HISTORY), cls, rule)


# -- squawk -----------------------------------------------------------------------------------------------

SQUAWK = find_squawk()
needs_squawk = pytest.mark.skipif(SQUAWK is None and not os.environ.get("CI"),
                                  reason="squawk is not installed (pip install squawk-cli)")


@needs_squawk
@pytest.mark.parametrize(("sql", "cls", "rule"), PG_CASES, ids=[c[0][:60] for c in PG_CASES])
def test_postgres_statement_classes_with_squawk(sql: str, cls: str, rule: str | None) -> None:
    assert SQUAWK is not None, "CI installs squawk-cli with the test extra"
    statement = last(sql, "postgresql", "16", history=PG_HISTORY, squawk=SQUAWK, transaction="none")
    assert statement.cls == cls, [(f.rule, f.cls, f.message) for f in statement.findings]
    if rule is not None:
        assert rule in statement.rules
    # every finding that holds the migration, ours or squawk's, says what to do
    assert all(f.hint.strip() for f in statement.findings if f.cls != "safe"), statement.findings
    # squawk may add advice, never a second finding for what our rule already says
    assert all(f.cls == "safe" for f in statement.findings if f.rule.startswith("squawk.")) or cls != "safe"


def test_without_squawk_postgres_is_judged_by_our_rules_and_says_so() -> None:
    verdict = judge_sql("ALTER TABLE accounts DROP COLUMN name;", "postgresql", "16", "expand", squawk=False)
    assert [n.rule for n in verdict.notes] == ["squawk-missing"]
    assert verdict.cls == "breaking"
    assert [f.rule for f in verdict.findings] == ["pg.drop-column"]


def test_squawk_hidden_from_path_is_not_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CONVEYOR_SQUAWK", "off")
    assert find_squawk() is None
    verdict = judge_sql("CREATE INDEX i ON accounts (email);", "postgresql", "16", "expand")
    assert [n.rule for n in verdict.notes] == ["squawk-missing"]
    assert verdict.cls == "needs-window"


@needs_squawk
def test_squawk_findings_join_ours_without_saying_the_same_twice() -> None:
    assert SQUAWK is not None, "CI installs squawk-cli with the test extra"
    sql = ("-- an index and a column\n"
           "CREATE INDEX accounts_email ON accounts (email);\n"
           "\n"
           "ALTER TABLE accounts ADD COLUMN counter int;\n")
    verdict = judge_sql(sql, "postgresql", "16", "expand", squawk=SQUAWK)
    assert verdict.notes == ()
    index, column = verdict.statements
    assert index.line == 2
    assert column.line == 4
    assert "pg.create-index-blocking" in index.rules
    assert "squawk.require-concurrent-index-creation" not in index.rules  # ours says it already
    assert index.cls == "needs-window"
    squawk_notes = [f for f in column.findings if f.rule.startswith("squawk.")]
    assert squawk_notes, column.findings  # e.g. prefer-robust-stmts, prefer-bigint-over-int
    assert all(f.cls == "safe" and f.allowed for f in squawk_notes)
    assert column.cls == "safe"


@needs_squawk
def test_squawk_maps_its_lock_rules_to_our_classes() -> None:
    assert SQUAWK is not None
    # sqlglot cannot follow this one, squawk (PostgreSQL's grammar) can: squawk's finding stands.
    verdict = judge_sql("ALTER TABLE accounts ADD CONSTRAINT c CHECK (balance > 0);\n", "postgresql", "16",
                        "expand", squawk=SQUAWK)
    statement = verdict.statements[0]
    assert statement.cls == "breaking"               # a CHECK refuses what the running release may write
    assert "pg.add-check-constraint" in statement.rules
    assert all(f.cls != "needs-window" or f.rule.startswith("squawk.") for f in statement.findings)


@needs_squawk
def test_squawk_syntax_errors_are_unparsed() -> None:
    assert SQUAWK is not None
    verdict = judge_sql("SELECT 1;\nALTER TABLE accounts ADD COLUMN;\n", "postgresql", "16", "expand",
                        squawk=SQUAWK)
    assert verdict.statements[0].cls == "safe"
    assert verdict.statements[1].cls == "needs-window"
    assert "unparsed" in verdict.statements[1].rules


def test_a_broken_squawk_is_a_note_not_a_crash(tmp_path: Path) -> None:
    fake = tmp_path / "squawk"
    fake.write_text("#!/bin/sh\necho 'thread main panicked' >&2\nexit 101\n")
    fake.chmod(0o755)
    verdict = judge_sql("ALTER TABLE accounts ADD COLUMN note text;", "postgresql", "16", "expand",
                        squawk=str(fake))
    assert [n.rule for n in verdict.notes] == ["squawk-failed"]
    assert verdict.cls == "safe"


# -- splitting statements ---------------------------------------------------------------------------------

def test_splitting_keeps_lines_across_comments_and_blank_lines() -> None:
    sql = ("-- first; not a statement\n"
           "\n"
           "/* a block; comment */\n"
           "SELECT 1;  -- trailing; comment\n"
           "SELECT\n"
           "  2;\n"
           "\n"
           "SELECT 3")
    found = split_statements(sql, "mysql")
    assert [(s.line, " ".join(s.text.split())) for s in found] == [
        (4, "SELECT 1"), (5, "SELECT 2"), (8, "SELECT 3")]


def test_mysql_strings_identifiers_and_hash_comments_hide_semicolons() -> None:
    sql = ("INSERT INTO t VALUES ('a;b', 'it''s', 'back\\'slash;', \"dq;\");\n"
           "# hash; comment\n"
           "ALTER TABLE `odd;name` ADD COLUMN `c;d` INT NULL;\n"
           "SELECT 1--1;\n")
    found = split_statements(sql, "mysql")
    assert [s.line for s in found] == [1, 3, 4]
    assert found[0].text.endswith("\"dq;\")")
    assert found[2].text == "SELECT 1--1"  # `--` without a space after it is not a MySQL comment


def test_postgres_dollar_quotes_and_nested_comments_hide_semicolons() -> None:
    sql = ("CREATE FUNCTION f() RETURNS int AS $body$\n"
           "  SELECT 1; -- $$ inside\n"
           "$body$ LANGUAGE sql;\n"
           "/* outer /* inner; */ still; comment */\n"
           "SELECT E'it\\'s; fine', 'plain\\';\n"
           "SELECT $$a;b$$;\n")
    found = split_statements(sql, "postgresql")
    assert [s.line for s in found] == [1, 5, 6]
    assert found[0].text.startswith("CREATE FUNCTION")
    assert found[0].text.endswith("LANGUAGE sql")
    assert found[1].text == "SELECT E'it\\'s; fine', 'plain\\'"


def test_a_begin_atomic_function_body_is_one_statement() -> None:
    sql = ("CREATE FUNCTION sign_of(x int) RETURNS int LANGUAGE sql\n"
           "BEGIN ATOMIC\n"
           "  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n"
           "END;\n"
           "SELECT 2;\n")
    found = split_statements(sql, "postgresql")
    assert [s.line for s in found] == [1, 5]
    assert found[0].text.endswith("END")


def test_a_delimiter_block_is_one_unreadable_statement_and_what_follows_is_read() -> None:
    sql = ("SELECT 1;\n"
           "DELIMITER //\n"
           "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END//\n"
           "DELIMITER ;\n"
           "ALTER TABLE orders ADD COLUMN z INT NULL;\n")
    found = split_statements(sql, "mysql")
    assert [s.line for s in found] == [1, 2, 5]
    assert found[1].problem
    assert "DELIMITER" in found[1].problem
    verdict = judge_sql(sql, "mysql", "8.0.35", "expand")
    assert [s.cls for s in verdict.statements] == ["safe", "needs-window", "safe"]
    assert verdict.statements[1].rules == ["unparsed"]


def test_an_unterminated_string_is_unparsed_at_its_line() -> None:
    verdict = judge_sql("SELECT 1;\n\nUPDATE t SET a = 'oops;\nSELECT 2;\n", "postgresql", None, "expand",
                        squawk=False)
    assert [s.line for s in verdict.statements] == [1, 3]
    assert verdict.statements[1].rules == ["unparsed"]


def test_findings_carry_the_statement_line_and_a_short_statement() -> None:
    sql = "\n\n-- widen\nALTER TABLE orders\n  DROP COLUMN note;\n"
    schema = Schema()
    judge_sql(MYSQL_HISTORY, "mysql", "8.0.35", "expand", schema=schema)
    finding = judge_sql(sql, "mysql", "8.0.35", "expand", schema=schema).findings[0]
    assert (finding.line, finding.statement, finding.rule) == (4, "ALTER TABLE orders DROP COLUMN note",
                                                               "mysql.drop-column")
    assert finding.hint


# -- phases -----------------------------------------------------------------------------------------------

def test_migration_phase_is_marked_by_the_first_line_or_a_contract_directory(tmp_path: Path) -> None:
    marked = tmp_path / "0003_drop.sql"
    marked.write_text("\n\n-- conveyor: contract\nALTER TABLE orders DROP COLUMN note;\n")
    plain = tmp_path / "0002_add.sql"
    plain.write_text("-- adds a column\n-- conveyor: contract\nALTER TABLE orders ADD COLUMN x INT NULL;\n")
    (tmp_path / "contract").mkdir()
    under = tmp_path / "contract" / "0004_drop.sql"
    under.write_text("ALTER TABLE orders DROP COLUMN code;\n")
    assert migration_phase(marked) == "contract"
    assert migration_phase(plain) == "expand"  # the mark counts only on the first non-empty line
    assert migration_phase(under) == "contract"


def test_contract_phase_allows_breaking_but_not_the_window() -> None:
    sql = "ALTER TABLE orders DROP COLUMN note;\nALTER TABLE orders MODIFY qty BIGINT NOT NULL DEFAULT 0;\n"
    schema = Schema()
    judge_sql(MYSQL_HISTORY, "mysql", "8.0.35", "expand", schema=schema)
    contract = judge_sql("-- conveyor: contract\n" + sql, "mysql", "8.0.35", schema=schema)
    assert contract.phase == "contract"
    drop = contract.statements[0].findings[0]
    assert (drop.cls, drop.allowed) == ("breaking", True)
    assert not contract.allowed()                      # copying the table still needs the window
    assert contract.allowed(in_window=True)
    assert [f.rule for f in contract.blocking()] == ["mysql.change-column-type"]
    expand = judge_sql(sql, "mysql", "8.0.35", "expand", schema=Schema())
    assert not expand.allowed(in_window=True)          # breaking is refused in expand, window or not
    assert {f.rule for f in expand.blocking(in_window=True)} == {"mysql.drop-column"}
    assert expand.allowed("contract", in_window=True)


# -- files, history and the JSON document ------------------------------------------------------------------

def test_a_directory_is_read_in_order_and_later_files_know_the_earlier_schema(tmp_path: Path) -> None:
    (tmp_path / "0001_create.sql").write_text("CREATE TABLE t (a VARCHAR(20) NULL) DEFAULT CHARSET=latin1;\n")
    (tmp_path / "contract").mkdir()
    (tmp_path / "contract" / "0003_drop.sql").write_text("ALTER TABLE t DROP COLUMN a;\n")
    (tmp_path / "0002_widen.sql").write_text("ALTER TABLE t MODIFY a VARCHAR(200) NULL;\n")
    files = sql_files(tmp_path)
    assert [p.name for p in files] == ["0001_create.sql", "0002_widen.sql", "0003_drop.sql"]
    verdicts = judge_files(files, "mysql", "8.0.35")
    assert [v.cls for v in verdicts] == ["safe", "safe", "breaking"]
    assert verdicts[1].findings[0].rule == "mysql.widen-varchar"
    assert verdicts[2].phase == "contract"
    assert verdicts[2].allowed()
    doc = document(verdicts)
    assert doc["class"] == "breaking"
    assert doc["allowed"] is True
    assert doc["files"][2]["statements"][0]["findings"][0] == {
        "rule": "mysql.drop-column", "class": "breaking", "message": verdicts[2].findings[0].message,
        "hint": verdicts[2].findings[0].hint, "allowed": True}
    assert doc["statements"][1] == {"file": str(files[1]), "line": 1, "sql": "ALTER TABLE t MODIFY a VARCHAR(200) NULL",
                                    "class": "safe", "rules": ["mysql.widen-varchar"], "hint": ""}


def test_judge_file_refuses_an_unknown_dialect_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown SQL dialect"):
        judge_sql("SELECT 1", "oracle")
    with pytest.raises(UsageError, match="cannot read"):
        judge_file(tmp_path / "missing.sql", "mysql")


# -- the command line ---------------------------------------------------------------------------------------

def conveyor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("conveyor", path=search) or "conveyor"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def test_db_lint_exit_codes_and_lines(tmp_path: Path) -> None:
    (tmp_path / "0001.sql").write_text("CREATE TABLE t (a INT NULL, b INT NULL);\n")
    (tmp_path / "0002.sql").write_text("ALTER TABLE t ADD COLUMN c INT NULL;\n")
    (tmp_path / "0003.sql").write_text("\nALTER TABLE t DROP COLUMN b;\n")
    done = conveyor("db", "lint", "0001.sql", "0002.sql", "--dialect", "mariadb", "--version", "10.11", cwd=tmp_path)
    assert done.returncode == 0, done
    assert "0002.sql:1: safe mysql.add-column:" in done.stdout
    assert "nothing blocks" in done.stdout
    done = conveyor("db", "lint", "0001.sql", "0003.sql", "--dialect", "mariadb", cwd=tmp_path)
    assert done.returncode == 1, done
    assert "0003.sql:2: breaking mysql.drop-column:" in done.stdout
    assert "breaking in expand migrations" in done.stdout
    done = conveyor("db", "lint", "0001.sql", "0003.sql", "--dialect", "mariadb", "--phase", "contract",
                    cwd=tmp_path)
    assert done.returncode == 0, done
    assert "[allowed: contract migration]" in done.stdout


def test_db_lint_json_and_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "m.sql").write_text("OPTIMIZE TABLE t;\n")
    done = conveyor("db", "lint", "m.sql", "--json", cwd=tmp_path)
    assert done.returncode == 1, done
    doc = json.loads(done.stdout)
    assert doc["class"] == "needs-window"
    assert doc["files"][0]["statements"][0]["findings"][0]["rule"] == "mysql.optimize-table"
    assert doc["statements"][0]["rules"] == ["mysql.optimize-table"]
    assert conveyor("db", "lint", "nope.sql", cwd=tmp_path).returncode == 2
    assert conveyor("db", "lint", "m.sql", "--dialect", "oracle", cwd=tmp_path).returncode == 2
    assert conveyor("db", "lint", "m.sql", "--phase", "later", cwd=tmp_path).returncode == 2
    missing = conveyor("db", "lint", cwd=tmp_path)
    assert missing.returncode == 2, missing


def test_db_lint_reads_the_migrations_section_of_the_config(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "0001.sql").write_text("CREATE TABLE accounts (id bigint PRIMARY KEY, name text);\n")
    (tmp_path / "db" / "0002.sql").write_text("CREATE INDEX accounts_name ON accounts (name);\n")
    (tmp_path / "conveyor.yml").write_text(
        "app: www\n"
        "roles: {web: {restart: 'true'}}\n"
        "environments: {staging: {transport: local, regions: {uk: {hosts: {web: [w1]}}}}}\n"
        "migrations: {dir: db, dialect: postgresql, version: '16', apply: 'true', status: 'true'}\n")
    done = conveyor("db", "lint", "--json", cwd=tmp_path)
    assert done.returncode == 1, done
    doc = json.loads(done.stdout)
    assert [f["path"] for f in doc["files"]] == ["db/0001.sql", "db/0002.sql"]
    assert "pg.create-index-blocking" in doc["statements"][1]["rules"]


def test_db_lint_judges_files_as_the_config_says_the_runner_wraps_them(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "0001.sql").write_text("CREATE TABLE teams (id bigint PRIMARY KEY);\n"
                                               "CREATE TABLE accounts (id bigint PRIMARY KEY, team_id bigint);\n")
    (tmp_path / "db" / "0002.sql").write_text(
        "ALTER TABLE accounts ADD CONSTRAINT fk FOREIGN KEY (team_id) REFERENCES teams (id) NOT VALID;\n"
        "ALTER TABLE accounts VALIDATE CONSTRAINT fk;\n")
    config = ("app: www\nroles: {web: {restart: 'true'}}\n"
              "environments: {staging: {transport: local, regions: {uk: {hosts: {web: [w1]}}}}}\n"
              "migrations: {dir: db, dialect: postgresql, version: '16', apply: 'true', status: 'true'%s}\n")
    (tmp_path / "conveyor.yml").write_text(config % "")
    done = conveyor("db", "lint", "--json", cwd=tmp_path)          # per-file, PostgreSQL's default
    assert done.returncode == 1, done
    assert "pg.validate-in-transaction" in json.loads(done.stdout)["statements"][-1]["rules"]
    assert conveyor("db", "lint", "--transaction", "none", cwd=tmp_path).returncode == 0
    (tmp_path / "conveyor.yml").write_text(config % ", transaction: none")
    assert conveyor("db", "lint", cwd=tmp_path).returncode == 0
    assert conveyor("db", "lint", "--transaction", "per-file", cwd=tmp_path).returncode == 1
    wrong = conveyor("db", "lint", "--transaction", "nested", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "per-file, none" in wrong.stderr
    (tmp_path / "conveyor.yml").write_text(config % ", transaction: sometimes")
    assert conveyor("db", "lint", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mariadb"])
def test_identifiers_with_letters_beyond_ascii_are_read_not_crashed_on(dialect: str) -> None:
    verdict = judge_sql("ALTER TABLE naïve ADD COLUMN größe int;\nSELECT é FROM naïve;\n", dialect, None, "expand",
                        squawk=False)
    assert [(s.line, s.cls) for s in verdict.statements] == [(1, "safe"), (2, "safe")]


# -- every verdict that holds a migration says why and what to do -------------------------------------------

def _source_rules(classes: tuple[str, ...]) -> set[str]:
    """The rule ids the rule modules give one of these classes, read from their source."""
    import conveyor.migrations as package

    found: set[str] = set()
    pattern = re.compile(r"""\(\s*"([a-z0-9-]+)",\s*"(needs-window|breaking)\"""")
    for module in Path(package.__file__).parent.glob("*.py"):
        for rule, cls in pattern.findall(module.read_text()):
            if cls in classes and rule not in ("safe", "needs-window", "breaking"):
                found.add(rule)
    return found


def _all_statements() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for sql, _, _ in MYSQL_CASES:
        cases.append(("mysql", last(sql, "mysql", "8.0.35", history=MYSQL_HISTORY)))
    for version, sql, *_ in MARIADB_CASES:
        cases.append(("mariadb", last(sql, "mariadb", version, history=MYSQL_HISTORY)))
    for sql, _, _ in PG_CASES:
        cases.append(("postgresql", last(sql, "postgresql", "16", history=PG_HISTORY, transaction="none")))
    for sql, transaction, _, _ in PG_TRANSACTION_CASES:
        cases.append(("postgresql", last(sql, "postgresql", "16", history=PG_HISTORY, transaction=transaction)))
    for version, sql in [("10", "ALTER TABLE accounts ADD COLUMN active boolean DEFAULT false"),
                         ("11", "ALTER TYPE mood ADD VALUE 'meh'"),
                         ("13", "ALTER TABLE accounts DETACH PARTITION accounts_2020"),
                         ("16", "ALTER TABLE accounts ATTACH PARTITION accounts_2020 FOR VALUES FROM (1) TO (9)"),
                         ("16", "ALTER TABLE accounts ADD CONSTRAINT no_overlap EXCLUDE USING gist (id WITH =)"),
                         ("16", "ALTER DOMAIN email_address ADD CONSTRAINT has_at CHECK (VALUE LIKE '%@%')")]:
        cases.append(("postgresql", last(sql, "postgresql", version, history=PG_HISTORY, transaction="none")))
    for sql in ("ALTER TABLE orders ADD PARTITION (PARTITION p9 VALUES LESS THAN (9))",
                "REPAIR TABLE orders", "ALTER TABLE orders TRUNCATE PARTITION p1",
                "ALTER TABLE orders DROP PARTITION p1", "CREATE TABLE t2 SELECT * FROM orders",
                "ALTER TABLE orders MODIFY note VARCHAR(80) NULL, ALGORITHM=INSTANT",
                "ALTER TABLE orders ADD COLUMN remark TEXT NULL, LOCK=SHARED",
                "ALTER TABLE orders DROP PRIMARY KEY", "DROP DATABASE shop",
                "ALTER TABLE orders ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE",
                "ALTER TABLE orders ADD COLUMN c CHAR(1) AS ('x') STORED"):
        cases.append(("mysql", last(sql, "mysql", "8.0.35", history=MYSQL_HISTORY)))
    cases.append(("mysql", last("ALTER TABLE orders ADD COLUMN remark TEXT NULL", "mysql", "5.5",
                                history=MYSQL_HISTORY)))
    return cases


def test_every_verdict_that_holds_a_migration_says_why_in_one_line_and_how_to_make_it_safe() -> None:
    seen: set[str] = set()
    for dialect, statement in _all_statements():
        for finding in statement.findings:  # type: ignore[attr-defined]
            if finding.cls == "safe":
                continue
            seen.add(finding.rule.split(".", 1)[-1])
            where = f"{dialect}: {finding.rule} on {statement.statement}"  # type: ignore[attr-defined]
            assert finding.message.strip(), where
            assert "\n" not in finding.message, where
            assert finding.hint.strip(), f"no hint: {where}"
            assert "\n" not in finding.hint, where
            assert finding.hint != finding.message, where
    # Every rule that can hold a migration is among those checked here.
    missing = _source_rules(("needs-window", "breaking")) - seen
    assert not missing, f"rules no case here exercises: {sorted(missing)}"
