"""`conveyor db lint --database URL`: the live schema, read from real servers, decides the verdicts that depend
on a column the linted files did not create.

PostgreSQL (the session's server, a database of our own) and MariaDB (Debian's mariadb-server, started for
this module, reached on its socket): tables are created directly in the database, never in the linted files.
Without --database such a column is unknown (needs-window); with it, widening is told from narrowing, a
validated CHECK (col IS NOT NULL) is known, a character set is known. For MariaDB the server then runs each
statement with the algorithm the linter claims (ALGORITHM=INSTANT, or INPLACE with LOCK=NONE), or refuses
INPLACE with LOCK=NONE where the linter says it copies the table. Bad URLs, unreachable servers, unknown
databases, wrong passwords and a missing driver end in one line and exit 2, never with the password.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from mariadbserver import MariaDB, running
from promstack import free_port

from conveyor.migrations.lint import judge_files, judge_sql
from conveyor.migrations.live import (
    mysql_connection,
    parse_url,
    postgres_connection,
    read_database,
    schema_from_database,
)
from conveyor.migrations.sqlschema import Column, ColumnType, Schema, Table

pytestmark = pytest.mark.integration


def conveyor(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("conveyor", path=search) or "conveyor"
    environment = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DATABASE_URL"}
    environment.update(env or {})
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
                          stdin=subprocess.DEVNULL, env=environment)


def lint_json(sql: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """`conveyor db lint change.sql ARGS --json`: its exit code and document."""
    (tmp_path / "change.sql").write_text(sql + "\n")
    done = conveyor("db", "lint", "change.sql", *args, "--json", cwd=tmp_path, env=env)
    assert done.returncode in (0, 1), done
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def with_database(url: str, database: str, *, password: str | None = None, query: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query if query is None else query, ""))


def shape(schema: Schema, table: str, name: str) -> tuple[Any, ...]:
    """What the live schema says of a column: type name, type, NOT NULL, has a default, charset, generated."""
    column = schema.column(table, name)
    assert column is not None, f"{table}.{name} was not read"
    assert column.type is not None, f"the type of {table}.{name} was not read"
    return (column.type.name, column.type.sql, column.not_null, column.has_default, column.charset,
            column.generated)


# -- the Schema a live database fills ---------------------------------------------------------------------

def test_a_table_added_as_live_is_known_and_new_to_no_file() -> None:
    schema = Schema()
    table = Table("Orders", charset="utf8mb4")
    table.put(Column("note", ColumnType("VARCHAR", "text", length=100, sql="VARCHAR(100)")))
    schema.add(table)
    assert schema.table("orders") is table
    assert not schema.is_new("orders")
    verdict = judge_sql("ALTER TABLE orders MODIFY note VARCHAR(50) NULL;", "mariadb", "10.11", "expand",
                        schema=schema)
    assert "mysql.narrow-column-type" in verdict.statements[0].rules
    # A file that creates the table makes it new to that file: its own history wins from there on.
    verdict = judge_sql("CREATE TABLE orders (note VARCHAR(10));\nALTER TABLE orders DROP COLUMN note;", "mariadb",
                        "10.11", "expand", schema=schema)
    assert verdict.statements[1].rules == ["mysql.new-table"]


# -- PostgreSQL -------------------------------------------------------------------------------------------

PG_LIVE = """
CREATE TABLE accounts (
  id bigint PRIMARY KEY,
  name varchar(50),
  email text NOT NULL,
  status varchar(20) NOT NULL DEFAULT 'active',
  balance numeric(12,2) NOT NULL DEFAULT 0,
  nickname text,
  total bigint GENERATED ALWAYS AS (id * 2) STORED
);
INSERT INTO accounts (id, name, email, nickname) SELECT g, 'n' || g, g || '@example.com', 'nick' || g
  FROM generate_series(1, 100) AS g;
ALTER TABLE accounts ADD CONSTRAINT accounts_nickname_nn CHECK (nickname IS NOT NULL);
ALTER TABLE accounts ADD CONSTRAINT accounts_name_nn CHECK (name IS NOT NULL) NOT VALID;
CREATE SCHEMA app;
CREATE TABLE app.things (id int PRIMARY KEY, label varchar(10) NOT NULL);
"""


@pytest.fixture(scope="module")
def pg_live(postgres_url: str) -> Iterator[str]:
    """A database of our own on the session's PostgreSQL, holding tables no linted file creates: its URL."""
    import psycopg

    name = f"lint_live_{uuid.uuid4().hex[:10]}"
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    url = with_database(postgres_url, name)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute(PG_LIVE)
    yield url
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_postgres_tables_columns_and_checks_are_read(pg_live: str) -> None:
    live = read_database(pg_live)
    assert live.dialect == "postgresql"
    assert live.version is not None
    assert live.version.split(".")[0].isdigit()
    schema = live.schema
    assert set(schema.tables) == {"accounts"}          # the schema `public` only
    assert not schema.is_new("accounts")
    assert [shape(schema, "accounts", c) for c in ("name", "email", "status", "balance", "total")] == [
        ("VARCHAR", "VARCHAR(50)", False, False, None, None),
        ("TEXT", "TEXT", True, False, None, None),
        ("VARCHAR", "VARCHAR(20)", True, True, None, None),
        ("DECIMAL", "DECIMAL(12, 2)", True, True, None, None),
        ("BIGINT", "BIGINT", False, True, None, "stored"),
    ]
    assert schema.not_null_checks == {"accounts_nickname_nn": ("accounts", "nickname"),
                                      "accounts_name_nn": ("accounts", "name")}
    assert schema.validated_not_null == {("accounts", "nickname")}
    # Another schema, by ?schema= (and the same through schema_from_database).
    other = schema_from_database(pg_live + "?schema=app", "postgresql")
    assert set(other.tables) == {"things"}
    assert shape(other, "things", "label") == ("VARCHAR", "VARCHAR(10)", True, False, None, None)
    assert read_database(pg_live + "?schema=app").location.endswith(".app")
    # libpq's own parameters pass through: no host in the URL, host and port in its query.
    parts = urlsplit(pg_live)
    bare = f"postgresql://{parts.path}?host={parts.hostname}&port={parts.port}&user=postgres&sslmode=disable"
    assert set(schema_from_database(bare, "postgresql").tables) == {"accounts"}


def test_judge_files_takes_the_live_schema_then_the_files_in_order(pg_live: str, tmp_path: Path) -> None:
    first, second = tmp_path / "0001.sql", tmp_path / "0002.sql"
    first.write_text("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(100);\n")
    second.write_text("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(60);\n")
    verdicts = judge_files([first, second], "postgresql", "15", schema=schema_from_database(pg_live, "postgresql"),
                           squawk=False)
    assert [v.statements[0].rules for v in verdicts] == [
        ["pg.widen-column-type"], ["pg.narrow-column-type", "pg.change-column-type"]]


def test_the_postgres_session_is_read_only(pg_live: str) -> None:
    import psycopg

    with postgres_connection(parse_url(pg_live)) as connection, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        connection.execute("CREATE TABLE written (a int)")


PG_CASES = [
    # sql, with the live schema: class and a rule it must name; without it: class and rule
    ("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(100);",
     "safe", "pg.widen-column-type", "needs-window", "pg.change-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(20);",
     "breaking", "pg.narrow-column-type", "needs-window", "pg.change-column-type"),
    ("ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14,2);",
     "safe", "pg.widen-column-type", "needs-window", "pg.change-column-type"),
    ("ALTER TABLE accounts DROP COLUMN nickname;",
     "breaking", "pg.drop-column", "breaking", "pg.drop-column"),
    ("ALTER TABLE accounts ALTER COLUMN status DROP DEFAULT;",
     "breaking", "pg.drop-default-not-null", "safe", "pg.set-default"),
    ("ALTER TABLE accounts ALTER COLUMN nickname SET NOT NULL;",
     "safe", "pg.set-not-null-checked", "breaking", "pg.set-not-null"),
]


@pytest.mark.parametrize(("sql", "live_cls", "live_rule", "blind_cls", "blind_rule"), PG_CASES,
                         ids=[case[0][len("ALTER TABLE accounts "):-1] for case in PG_CASES])
def test_postgres_verdicts_with_and_without_the_live_schema(pg_live: str, tmp_path: Path, sql: str, live_cls: str,
                                                            live_rule: str, blind_cls: str, blind_rule: str) -> None:
    code, doc = lint_json(sql, tmp_path, "--dialect", "postgresql", "--database", pg_live)
    (statement,) = doc["statements"]
    assert set(statement) == {"file", "line", "sql", "class", "rules", "hint"}
    assert (statement["file"], statement["line"], statement["sql"]) == ("change.sql", 1, sql.rstrip(";"))
    assert statement["class"] == live_cls, statement
    assert live_rule in statement["rules"], statement
    assert code == (1 if live_cls != "safe" else 0)
    assert doc["database"]["dialect"] == "postgresql"
    assert doc["database"]["tables"] == 1
    code, doc = lint_json(sql, tmp_path, "--dialect", "postgresql")
    (statement,) = doc["statements"]
    assert statement["class"] == blind_cls, statement
    assert blind_rule in statement["rules"], statement
    assert "database" not in doc


def test_the_url_can_come_from_the_environment_and_the_dialect_from_the_url(pg_live: str, tmp_path: Path) -> None:
    code, doc = lint_json("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(100);", tmp_path,
                          env={"CONVEYOR_DATABASE_URL": pg_live})
    assert code == 0, doc
    assert doc["statements"][0]["class"] == "safe"
    assert "pg.widen-column-type" in doc["statements"][0]["rules"]   # beside squawk's advice, if installed
    assert doc["database"]["url"] == pg_live


def test_the_migrations_dir_is_judged_after_the_live_schema_in_order(pg_live: str, tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "0001_widen.sql").write_text("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(100);\n")
    (tmp_path / "db" / "0002_narrow.sql").write_text("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(80);\n")
    (tmp_path / "conveyor.yml").write_text(
        "app: www\n"
        "roles: {web: {restart: 'true'}}\n"
        "environments: {staging: {transport: local, regions: {uk: {hosts: {web: [w1]}}}}}\n"
        "migrations: {dir: db, dialect: postgresql, version: '15', apply: 'true', status: 'true'}\n")
    done = conveyor("db", "lint", "--database", pg_live, "--json", cwd=tmp_path)
    assert done.returncode == 1, done
    doc = json.loads(done.stdout)
    assert [(s["file"], s["class"]) for s in doc["statements"]] == [("db/0001_widen.sql", "safe"),
                                                                   ("db/0002_narrow.sql", "breaking")]
    assert "pg.narrow-column-type" in doc["statements"][1]["rules"]  # varchar(100), as 0001 left it, to 80
    text = conveyor("db", "lint", "--database", pg_live, cwd=tmp_path)
    assert text.returncode == 1, text
    assert text.stdout.splitlines()[0].endswith("read: 1 table (postgresql " + doc["database"]["version"] + ")")
    assert "db/0002_narrow.sql:1: breaking pg.narrow-column-type:" in text.stdout


def assert_refused(done: subprocess.CompletedProcess[str], *, words: str, secret: str | None = None) -> None:
    """Exit 2 with one line on stderr naming the problem, no traceback, and never the password."""
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("conveyor: "), lines
    assert words in lines[0], lines
    if secret is not None:
        assert secret not in done.stdout + done.stderr
        assert quote(secret, safe="") not in done.stdout + done.stderr


def test_postgres_errors_are_one_line_exit_2_without_the_password(postgres_url: str, tmp_path: Path) -> None:
    (tmp_path / "change.sql").write_text("ALTER TABLE accounts ALTER COLUMN name TYPE varchar(100);\n")
    secret = "Pg-s3cret/pass:word"
    unreachable = with_database(postgres_url, "postgres", password=secret).replace(
        f":{urlsplit(postgres_url).port}/", f":{free_port()}/")
    done = conveyor("db", "lint", "change.sql", "--database", unreachable, cwd=tmp_path)
    assert_refused(done, words="cannot read the live schema from postgresql+psycopg://postgres:********@127.0.0.1:",
                   secret=secret)
    assert "refused" in done.stderr.lower()
    missing = with_database(postgres_url, "no_such_database", password=secret)
    done = conveyor("db", "lint", "change.sql", "--database", missing, cwd=tmp_path)
    assert_refused(done, words='database "no_such_database" does not exist', secret=secret)
    done = conveyor("db", "lint", "change.sql", "--database", missing, "--json", cwd=tmp_path)
    assert done.returncode == 2, done
    error = json.loads(done.stdout)
    assert error["exit_code"] == 2
    assert "does not exist" in error["error"]
    assert secret not in done.stdout
    no_schema = with_database(postgres_url, "postgres", query="schema=nowhere")
    assert_refused(conveyor("db", "lint", "change.sql", "--database", no_schema, cwd=tmp_path),
                   words="has no schema nowhere")
    encoded = quote(secret, safe="")
    assert_refused(conveyor("db", "lint", "change.sql", "--database", f"oracle://scott:{encoded}@db/orcl",
                            cwd=tmp_path), words="unsupported URL", secret=secret)
    assert_refused(conveyor("db", "lint", "change.sql", "--database", f"postgresql://u:{encoded}@db:port/x",
                            cwd=tmp_path), words="is not a URL Conveyor can read", secret=secret)
    # A password with an unencoded / breaks the URL: the message still hides all of it.
    done = conveyor("db", "lint", "change.sql", "--database", f"postgresql://u:{secret}@db/x", cwd=tmp_path)
    assert_refused(done, words="must be percent-encoded", secret=secret)
    assert "s3cret" not in done.stderr
    assert_refused(conveyor("db", "lint", "change.sql", "--dialect", "mysql", "--database", postgres_url,
                            cwd=tmp_path), words="is a PostgreSQL database, but the migrations are judged as mysql")


def test_a_missing_driver_names_the_extra_to_install(tmp_path: Path) -> None:
    (tmp_path / "change.sql").write_text("ALTER TABLE t MODIFY note VARCHAR(200) NULL;\n")
    code = ("import sys; sys.modules['pymysql'] = None; from conveyor.cli.app import main; "
            "main(['db', 'lint', 'change.sql', '--database', 'mysql://root:hidden-password@localhost/shop'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert_refused(done, words="pip install 'conveyor-deploy[mysql]'", secret="hidden-password")


# -- MariaDB ----------------------------------------------------------------------------------------------

MARIADB_LIVE = """
CREATE TABLE t (
  id BIGINT NOT NULL PRIMARY KEY,
  note VARCHAR(100) CHARACTER SET utf8mb4 NULL,
  title VARCHAR(50) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  code VARCHAR(150) NULL,
  short VARCHAR(40) NULL,
  qty INT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=latin1;
CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, body TEXT, FULLTEXT KEY ft_body (body))
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO t (id, note, title, code, short, qty) VALUES {rows};
INSERT INTO docs (id, body) VALUES (1, 'first words'), (2, 'second words');
""".replace("{rows}", ", ".join(f"({i}, 'note {i}', 'title {i}', 'C{i}', 'S{i}', {i})" for i in range(1, 201)))


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    with running(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture
def maria_live(mariadb: MariaDB) -> Iterator[tuple[str, str]]:
    """A fresh database holding the live tables: its name and URL (root on the server's socket)."""
    name = f"live{uuid.uuid4().hex[:10]}"
    created = mariadb.run(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    assert created.returncode == 0, created.stderr
    loaded = mariadb.run(MARIADB_LIVE, name)
    assert loaded.returncode == 0, loaded.stderr
    yield name, f"mysql://root@localhost/{name}?unix_socket={mariadb.socket}"
    mariadb.run(f"DROP DATABASE {name}")


def test_mariadb_tables_columns_charsets_and_fulltext_are_read(maria_live: tuple[str, str]) -> None:
    _, url = maria_live
    live = read_database(url)
    assert live.dialect == "mariadb"                  # a mysql:// URL, and the server says it is MariaDB
    assert live.version is not None
    assert int(live.version.split(".")[0]) >= 10
    schema = live.schema
    assert set(schema.tables) == {"t", "docs"}
    assert [(t.charset, t.fulltext) for t in (schema.tables["t"], schema.tables["docs"])] == [
        ("latin1", False), ("utf8mb4", True)]
    assert [shape(schema, "t", c) for c in ("note", "title", "code", "qty")] == [
        ("VARCHAR", "VARCHAR(100)", False, False, "utf8mb4", None),
        ("VARCHAR", "VARCHAR(50)", True, True, "utf8mb4", None),
        ("VARCHAR", "VARCHAR(150)", False, False, "latin1", None),
        ("INT", "INT(11)", True, True, None, None),
    ]
    assert not schema.is_new("t")


def test_the_mariadb_session_is_read_only(maria_live: tuple[str, str]) -> None:
    import pymysql

    _, url = maria_live
    with mysql_connection(parse_url(url)) as connection, connection.cursor() as cursor, \
            pytest.raises(pymysql.err.MySQLError, match="READ ONLY"):
        cursor.execute("INSERT INTO docs (id, body) VALUES (3, 'written')")


MARIADB_CASES = [
    # sql, class and rule with the live schema
    ("ALTER TABLE t MODIFY note VARCHAR(200) CHARACTER SET utf8mb4 NULL", "safe", "mysql.widen-varchar"),
    ("ALTER TABLE t MODIFY title VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL DEFAULT ''", "needs-window",
     "mysql.widen-varchar-copy"),
    # The character set of code and short (latin1, from the table) is known only from the live schema.
    ("ALTER TABLE t MODIFY code VARCHAR(200) NULL", "safe", "mysql.widen-varchar"),
    ("ALTER TABLE t MODIFY code VARCHAR(300) NULL", "needs-window", "mysql.widen-varchar-copy"),
    ("ALTER TABLE t MODIFY short VARCHAR(300) NULL", "safe", "mysql.widen-varchar"),  # < 128 bytes: to any
    ("ALTER TABLE t MODIFY qty BIGINT NOT NULL DEFAULT 0", "needs-window", "mysql.change-column-type"),
    ("ALTER TABLE t MODIFY note VARCHAR(50) CHARACTER SET utf8mb4 NULL", "breaking", "mysql.narrow-column-type"),
]


@pytest.mark.parametrize(("sql", "cls", "rule"), MARIADB_CASES,
                         ids=[c[0][len("ALTER TABLE t "):] for c in MARIADB_CASES])
def test_mariadb_verdicts_on_live_columns_and_the_server_agrees(mariadb: MariaDB, maria_live: tuple[str, str],
                                                                sql: str, cls: str, rule: str) -> None:
    database, url = maria_live
    live = read_database(url, "mariadb")
    verdict = judge_sql(sql + ";", "mariadb", live.version, "expand", schema=live.schema)
    (statement,) = verdict.statements
    assert statement.cls == cls, statement
    assert rule in statement.rules, statement
    blind = judge_sql(sql + ";", "mariadb", live.version, "expand").statements[0]
    assert blind.rules == ["mysql.modify-column-unknown"]
    assert blind.cls == "needs-window"
    algorithm = statement.algorithm
    alter, table_word, table, actions = sql.split(" ", 3)
    if algorithm in ("instant", "inplace"):
        clause = "ALGORITHM=INSTANT" if algorithm == "instant" else "ALGORITHM=INPLACE, LOCK=NONE"
        done = mariadb.run(f"{alter} {table_word} {table} {clause}, {actions}", database)
        assert done.returncode == 0, f"{cls} {algorithm}: the server refused {clause}: {done.stderr}"
    else:
        assert algorithm == "copy", statement
        done = mariadb.run(f"{alter} {table_word} {table} ALGORITHM=INPLACE, LOCK=NONE, {actions}", database)
        assert done.returncode != 0, f"{cls} {algorithm}: the server ran it with ALGORITHM=INPLACE, LOCK=NONE"
        assert "not supported" in done.stderr, done.stderr
        if cls != "breaking":
            plain = mariadb.run(sql, database)
            assert plain.returncode == 0, plain.stderr


def test_mariadb_live_knowledge_of_defaults_and_fulltext_indexes(mariadb: MariaDB,
                                                                 maria_live: tuple[str, str]) -> None:
    database, url = maria_live
    live = read_database(url)
    dropped = judge_sql("ALTER TABLE t ALTER COLUMN title DROP DEFAULT;", "mariadb", live.version, "expand",
                        schema=live.schema)
    assert dropped.statements[0].rules == ["mysql.drop-default-not-null"]
    # docs has a FULLTEXT index: ADD COLUMN is not instant there, and the server agrees.
    added = judge_sql("ALTER TABLE docs ADD COLUMN n INT NULL;", "mariadb", live.version, "expand",
                      schema=live.schema)
    blind = judge_sql("ALTER TABLE docs ADD COLUMN n INT NULL;", "mariadb", live.version, "expand")
    assert blind.statements[0].algorithm == "instant"
    assert added.statements[0].algorithm != "instant"
    refused = mariadb.run("ALTER TABLE docs ALGORITHM=INSTANT, ADD COLUMN n INT NULL", database)
    assert refused.returncode != 0
    assert "not supported" in refused.stderr, refused.stderr


def test_mariadb_through_the_cli_with_a_password_user(mariadb: MariaDB, maria_live: tuple[str, str],
                                                      tmp_path: Path) -> None:
    database, _ = maria_live
    secret = "Maria@s3cret:pass/word"
    user = f"lint{uuid.uuid4().hex[:8]}"
    granted = mariadb.run(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{secret}'; "
                          f"GRANT SELECT ON {database}.* TO '{user}'@'localhost';")
    assert granted.returncode == 0, granted.stderr
    url = f"mysql://{user}:{quote(secret, safe='')}@localhost/{database}?unix_socket={mariadb.socket}"
    sql = "ALTER TABLE t MODIFY note VARCHAR(200) CHARACTER SET utf8mb4 NULL;"
    (tmp_path / "change.sql").write_text(sql + "\n")
    done = conveyor("db", "lint", "change.sql", "--database", url, "--json", cwd=tmp_path)
    assert done.returncode == 0, done
    assert secret not in done.stdout
    assert quote(secret, safe="") not in done.stdout
    doc = json.loads(done.stdout)
    assert doc["statements"] == [{"file": "change.sql", "line": 1, "sql": sql.rstrip(";"), "class": "safe",
                                  "rules": ["mysql.widen-varchar"], "hint": ""}]
    # No --dialect and no config: a mysql:// URL, and the server says it is MariaDB, and which version.
    message = doc["files"][0]["statements"][0]["findings"][0]["message"]
    assert message.endswith(f"on MariaDB {doc['database']['version']})"), message
    assert doc["database"]["dialect"] == "mariadb"
    assert doc["database"]["url"].startswith(f"mysql://{user}:********@localhost/{database}")
    wrong = url.replace(quote(secret, safe=""), quote("Not-the-password!", safe=""))
    assert_refused(conveyor("db", "lint", "change.sql", "--database", wrong, cwd=tmp_path),
                   words="Access denied", secret="Not-the-password!")
    unknown = url.replace(f"/{database}?", "/no_such_db?")
    assert_refused(conveyor("db", "lint", "change.sql", "--database", unknown, cwd=tmp_path),
                   words="no_such_db", secret=secret)
    nowhere = f"mariadb://root:{quote(secret, safe='')}@localhost/{database}?unix_socket={mariadb.socket}.gone"
    assert_refused(conveyor("db", "lint", "change.sql", "--database", nowhere, cwd=tmp_path),
                   words="Can't connect", secret=secret)
    mariadb.run(f"DROP USER '{user}'@'localhost'")
