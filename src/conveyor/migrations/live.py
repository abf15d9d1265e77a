"""The live schema: what a database's catalog says exists, so that `conveyor db lint --database URL` judges a
change to a column the linted files did not create by what that column is now.

    schema = schema_from_database("postgresql://app@db.internal/shop", "postgresql")
    verdicts = judge_files(paths, "postgresql", schema=schema)   # the live schema first, then the files

The tables of one database (MySQL, MariaDB) or one schema of it (PostgreSQL: `public`, `?schema=NAME`, or
the first of the connection's search_path) become `Schema` tables the way a CREATE TABLE would: each
column's type (with its length, precision and scale) is read back with the same parser the rules use on a
statement, and with it nullability, whether it has a default, its character set (MySQL, MariaDB),
AUTO_INCREMENT and generated columns. MySQL and MariaDB also say which tables carry a FULLTEXT index (ADD
COLUMN is then not instant); PostgreSQL which `CHECK (col IS NOT NULL)` constraints exist and which are
validated (SET NOT NULL then needs no scan).

Nothing is written: the session is read-only (a READ ONLY transaction), with a 5-second connect timeout.
The password never appears in a message. The drivers are imported only here, only when used: psycopg
(`pip install 'conveyor-deploy[postgres]'`) and PyMySQL (`pip install 'conveyor-deploy[mysql]'`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from conveyor.errors import UsageError
from conveyor.migrations.findings import Dialect
from conveyor.migrations.sqlschema import Column, Index, Schema, Table, canonical_charset, parse_column
from conveyor.secrets import MASK, mask, register_secret

CONNECT_TIMEOUT = 5      # seconds to reach the server
QUERY_TIMEOUT = 60       # seconds for the catalog queries

# URL schemes by the dialect they name (mysql:// may reach a MariaDB server: the server says which it is).
_SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql", "postgres": "postgresql", "postgresql+psycopg": "postgresql",
    "mysql": "mysql", "mysql+pymysql": "mysql", "mariadb": "mariadb", "mariadb+pymysql": "mariadb",
}
_FAMILY = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB", "mariadb": "MySQL/MariaDB"}
# Query parameters that are ours, not the driver's.
_OURS = {"schema", "unix_socket", "socket"}
# `CHECK ((col IS NOT NULL))`, as pg_get_constraintdef writes it.
_NOT_NULL_CHECK = re.compile(r'CHECK\s*\(\s*\(?\s*"?(\w+)"?\s+IS\s+NOT\s+NULL\s*\)?\s*\)', re.IGNORECASE)


@dataclass(frozen=True)
class DatabaseURL:
    """A database URL taken apart: `postgresql://user:password@host:port/database?schema=app`,
    `mysql://user:password@host:port/database?unix_socket=/run/mysqld/mysqld.sock`."""

    raw: str
    dialect: Dialect             # as the scheme names it
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: tuple[tuple[str, str], ...]

    def param(self, name: str) -> str | None:
        """A query parameter's (last) value."""
        found = [value for key, value in self.query if key == name]
        return found[-1] if found else None

    @property
    def safe(self) -> str:
        """The URL with its password masked, fit to print."""
        return _without_password(self.raw)


@dataclass(frozen=True)
class LiveSchema:
    """What was read: the schema, and the server it came from."""

    schema: Schema
    dialect: Dialect             # the server's own: postgresql, mysql or mariadb
    version: str | None          # like 16.2 or 10.11.6
    location: str                # the database read (and, PostgreSQL, its schema): shop, shop.public
    url: str                     # the URL, password masked

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "dialect": self.dialect, "version": self.version, "location": self.location,
                "tables": len(self.schema.tables)}


def parse_url(url: str) -> DatabaseURL:
    """Take a database URL apart; a UsageError for one Conveyor cannot read. Its password becomes a secret
    (masked wherever Conveyor prints)."""
    password = _password_in(url.strip())
    if password:
        register_secret(password)
        register_secret(unquote(password))
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        # urllib's reason may quote part of the password: leave it out.
        raise UsageError(f"--database: {_without_password(url)} is not a URL Conveyor can read (its host or port "
                         "is not; characters like / @ : # ? in the password must be percent-encoded)") from None
    if parts.password:
        register_secret(unquote(parts.password))
        register_secret(parts.password)
    for key, value in parse_qsl(parts.query):
        if key.lower() == "password":
            register_secret(value)
    dialect = _SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        raise UsageError(f"--database: unsupported URL {_without_password(url)!r}; use postgresql://, mysql:// or "
                         "mariadb:// (user:password@host:port/database)")
    database = unquote(parts.path.lstrip("/")) or None
    return DatabaseURL(raw=url.strip(), dialect=dialect, user=unquote(parts.username) if parts.username else None,
                       password=unquote(parts.password) if parts.password is not None else None,
                       host=unquote(parts.hostname) if parts.hostname else None, port=port, database=database,
                       query=tuple(parse_qsl(parts.query, keep_blank_values=True)))


def read_database(url: str, dialect: str | None = None) -> LiveSchema:
    """The live schema at `url`. `dialect` (when given) must be of the URL's family: PostgreSQL, or MySQL and
    MariaDB. Any failure (no driver, cannot connect, refused, no such database) is a one-line UsageError."""
    parsed = parse_url(url)
    if dialect is not None and _FAMILY.get(dialect) != _FAMILY[parsed.dialect]:
        raise UsageError(f"--database: {parsed.safe} is a {_FAMILY[parsed.dialect]} database, but the migrations "
                         f"are judged as {dialect}")
    if parsed.dialect == "postgresql":
        return _read_postgres(parsed)
    return _read_mysql(parsed)


def schema_from_database(url: str, dialect: str) -> Schema:
    """A `Schema` holding the live tables at `url` (none of them new): pass it to `judge_files`/`judge_sql`."""
    return read_database(url, dialect).schema


# -- shared ------------------------------------------------------------------------------------------------

def _password_in(url: str) -> str | None:
    """The password of `scheme://user:password@host...` as written, even when it breaks the URL's syntax (an
    unencoded / or #): everything from the user's colon to the last @."""
    split = _userinfo(url)
    return split[2] if split is not None else None


def _userinfo(url: str) -> tuple[str, str, str, str] | None:
    """scheme, user, password and the rest (host, path, query) of a URL with a password; None without."""
    scheme, sep, rest = url.partition("://")
    before_query = rest.split("?", 1)[0]
    userinfo, at, _ = (before_query if "@" in before_query else rest).rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return None
    user, password = userinfo.split(":", 1)
    return scheme, user, password, rest[len(userinfo) + 1:]


def _without_password(url: str) -> str:
    """The URL with its password masked (and any other secret Conveyor knows)."""
    text = url.strip()
    split = _userinfo(text)
    if split is not None:
        scheme, user, _, rest = split
        text = f"{scheme}://{user}:{MASK}@{rest}"
    # libpq also takes the password as a parameter.
    return mask(re.sub(r"([?&]password=)[^&]*", rf"\g<1>{MASK}", text, flags=re.IGNORECASE))


def _driver(module: str, extra: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"--database: reading a {what} database needs the {module} package: pip install "
                         f"'conveyor-deploy[{extra}]'") from None


def _cannot(url: DatabaseURL, reason: object) -> UsageError:
    text = " ".join(str(reason).split()) or type(reason).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return UsageError(mask(f"--database: cannot read the live schema from {url.safe}: {text}"))


def _text(value: Any) -> Any:
    """A catalog value as text (MySQL 8 returns some information_schema columns as bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


def _column(name: str, type_sql: str, dialect: str) -> Column:
    """A column of the given type, its type read the way a CREATE TABLE's would be (unknown if unreadable)."""
    quote = '"' if dialect == "postgresql" else "`"
    parsed = parse_column(f"{quote}{name.replace(quote, quote * 2)}{quote} {type_sql}", dialect)
    return Column(name=name, type=parsed.column.type if parsed is not None else None)


def _version(text: str | None) -> str | None:
    match = re.search(r"\d+(?:\.\d+)*", text or "")
    return match.group(0) if match else None


# -- PostgreSQL --------------------------------------------------------------------------------------------

# Identity columns came with PostgreSQL 10, generated ones with 12.
_PG_COLUMNS = (
    "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef, "
    "a.attidentity, a.attgenerated "
    "FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
    "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY c.relname, a.attnum")
_PG_COLUMNS_BEFORE_12 = _PG_COLUMNS.replace("a.attidentity, a.attgenerated", "'', ''")


@contextmanager
def postgres_connection(url: DatabaseURL) -> Iterator[Any]:
    """A read-only psycopg connection (every transaction READ ONLY); closed at the end."""
    psycopg = _driver("psycopg", "postgres", "PostgreSQL")
    parts = urlsplit(url.raw)
    query = [(key, value) for key, value in url.query if key not in _OURS]
    # By hand: urlunsplit drops the // of an empty host (postgresql:///shop?host=/run/postgresql).
    conninfo = f"postgresql://{parts.netloc}{parts.path}" + (f"?{urlencode(query)}" if query else "")
    options: dict[str, Any] = {}
    if url.param("connect_timeout") is None:
        options["connect_timeout"] = CONNECT_TIMEOUT
    if url.param("application_name") is None:
        options["application_name"] = "conveyor-db-lint"
    try:
        connection = psycopg.connect(conninfo, **options)
    except psycopg.Error as exc:
        raise _cannot(url, exc) from exc
    try:
        connection.read_only = True
        yield connection
    finally:
        connection.close()


def _read_postgres(url: DatabaseURL) -> LiveSchema:
    psycopg = _driver("psycopg", "postgres", "PostgreSQL")
    schema = Schema()
    try:
        with postgres_connection(url) as connection:
            # pg_catalog rather than information_schema: it lists every table whatever our privileges on
            # its columns, and format_type() writes a type as it was declared (varchar(50), numeric(12,2)).
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = '{QUERY_TIMEOUT}s'")
                cursor.execute("SELECT current_database(), current_schema()")
                database, current = cursor.fetchone()
                namespace = url.param("schema") or current
                if namespace is None:
                    raise UsageError(f"--database: no schema of the search_path exists in {url.safe}; name one "
                                     "with ?schema=NAME")
                cursor.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (namespace,))
                if cursor.fetchone() is None:
                    raise UsageError(f"--database: database {database} has no schema {namespace} ({url.safe})")
                number = int(connection.info.server_version)
                query = _PG_COLUMNS if number >= 120000 else _PG_COLUMNS_BEFORE_12
                cursor.execute(query, (namespace,))
                for table_name, name, type_sql, not_null, has_default, ident, gen in cursor.fetchall():
                    table = schema.table(table_name)
                    if table is None:
                        table = Table(name=table_name)
                        schema.add(table)
                    column = _column(name, type_sql, "postgresql")
                    column.not_null = bool(not_null)
                    column.has_default = bool(has_default) or bool(ident)
                    column.generated = "stored" if gen == "s" else None
                    table.put(column)
                cursor.execute(
                    "SELECT c.relname, con.conname, pg_catalog.pg_get_constraintdef(con.oid), con.convalidated "
                    "FROM pg_catalog.pg_constraint con "
                    "JOIN pg_catalog.pg_class c ON c.oid = con.conrelid "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND con.contype = 'c'", (namespace,))
                for table_name, constraint, definition, validated in cursor.fetchall():
                    match = _NOT_NULL_CHECK.fullmatch(definition.removesuffix(" NOT VALID").strip())
                    if match is None:
                        continue
                    checked = (table_name.lower(), match.group(1).lower())
                    schema.not_null_checks[constraint.lower()] = checked
                    if validated:
                        schema.validated_not_null.add(checked)
            connection.rollback()
    except psycopg.Error as exc:
        raise _cannot(url, exc) from exc
    major, rest = divmod(number, 10000)
    version = f"{major}.{rest}" if major >= 10 else f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return LiveSchema(schema=schema, dialect="postgresql", version=version, location=f"{database}.{namespace}",
                      url=url.safe)


# -- MySQL and MariaDB -------------------------------------------------------------------------------------

def _read_mysql_keys(cursor: Any, database: str, schema: Schema) -> None:
    """Every index of every table (the primary key, UNIQUE, plain, FULLTEXT, SPATIAL), columns in order."""
    cursor.execute("SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, INDEX_TYPE "
                   "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
                   "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", (database,))
    found: dict[tuple[str, str], tuple[list[str], str]] = {}
    for row in cursor.fetchall():
        table_name, index_name, non_unique, column, index_type = (_text(v) for v in row)
        kind = ("primary" if index_name == "PRIMARY" else "fulltext" if index_type == "FULLTEXT" else
                "spatial" if index_type == "SPATIAL" else "index" if int(non_unique) else "unique")
        columns, _ = found.setdefault((table_name, index_name), ([], kind))
        if column:
            columns.append(str(column).lower())
    for table in schema.tables.values():
        table.keys_known = True
    for (table_name, index_name), (columns, kind) in found.items():
        known = schema.table(table_name)
        if known is not None:
            known.add_index(Index(index_name, tuple(columns), kind))

@contextmanager
def mysql_connection(url: DatabaseURL) -> Iterator[Any]:
    """A PyMySQL connection to the URL's database, inside a READ ONLY transaction; closed at the end."""
    pymysql = _driver("pymysql", "mysql", "MySQL/MariaDB")
    if not url.database:
        raise UsageError(f"--database: name the database to read in {url.safe}, like mysql://user@host/DATABASE")
    options: dict[str, Any] = {"user": url.user, "password": url.password or "", "database": url.database,
                               "connect_timeout": CONNECT_TIMEOUT, "read_timeout": QUERY_TIMEOUT,
                               "write_timeout": QUERY_TIMEOUT, "charset": "utf8mb4"}
    socket = url.param("unix_socket") or url.param("socket")
    if socket:
        options["unix_socket"] = socket
    else:
        options["host"] = url.host or "localhost"
        options["port"] = url.port or 3306
    try:
        connection = pymysql.connect(**options)
    except pymysql.err.MySQLError as exc:
        raise _cannot(url, _mysql_reason(exc)) from exc
    try:
        with connection.cursor() as cursor:
            cursor.execute("START TRANSACTION READ ONLY")
        yield connection
    finally:
        connection.close()


def _mysql_reason(exc: BaseException) -> str:
    # PyMySQL's errors carry (code, message).
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    return str(args[1]) if len(args) >= 2 else str(exc)


def _read_mysql(url: DatabaseURL) -> LiveSchema:
    pymysql = _driver("pymysql", "mysql", "MySQL/MariaDB")
    schema = Schema()
    try:
        with mysql_connection(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            raw_version = str(_text(cursor.fetchone()[0]))
            flavor: Dialect = "mariadb" if "mariadb" in raw_version.lower() else "mysql"
            database = url.database or ""
            cursor.execute("SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')",
                           (database,))
            for row in cursor.fetchall():
                name, collation = (_text(v) for v in row)
                # A collation's name starts with its character set: utf8mb4_general_ci, latin1_swedish_ci.
                schema.add(Table(name=name, charset=canonical_charset(collation)))
            cursor.execute("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, "
                           "CHARACTER_SET_NAME, EXTRA, COLLATION_NAME FROM information_schema.COLUMNS "
                           "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION", (database,))
            for row in cursor.fetchall():
                table_name, name, type_sql, nullable, default, charset, extra, collation = (_text(v) for v in row)
                table = schema.table(table_name)
                if table is None:
                    continue  # a view's columns
                column = _column(name, type_sql, flavor)
                column.not_null = str(nullable).upper() == "NO"
                # MariaDB writes a NULL-able column's implicit DEFAULT NULL as the word NULL; MySQL as NULL.
                column.has_default = default is not None and not (default == "NULL" and not column.not_null)
                column.charset = canonical_charset(charset)
                column.collation = collation.lower() if collation else None
                words = str(extra or "").upper()
                column.auto_increment = "AUTO_INCREMENT" in words
                if "VIRTUAL GENERATED" in words:
                    column.generated = "virtual"
                elif "STORED GENERATED" in words or "PERSISTENT GENERATED" in words:
                    column.generated = "stored"
                table.put(column)
            _read_mysql_keys(cursor, database, schema)
            connection.rollback()
    except pymysql.err.MySQLError as exc:
        raise _cannot(url, _mysql_reason(exc)) from exc
    return LiveSchema(schema=schema, dialect=flavor, version=_version(raw_version), location=database, url=url.safe)


__all__ = ["CONNECT_TIMEOUT", "DatabaseURL", "LiveSchema", "mysql_connection", "parse_url", "postgres_connection",
           "read_database", "schema_from_database"]
