"""What the linter knows of the schema: the tables and columns that earlier statements created or changed.

A migration directory is its own schema history: a verdict that depends on a column's current definition
(widening or narrowing a type, dropping a default of a NOT NULL column) uses what the files before it said.
Statements are parsed with sqlglot; this module turns its column definitions and data types into small
values of our own, so the rules compare types without knowing sqlglot's classes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.migrations.statements import Words, lex

# Integer types by their size in bytes.
_INTEGERS = {"TINYINT": 1, "SMALLINT": 2, "MEDIUMINT": 3, "INT": 4, "BIGINT": 8,
             "SMALLSERIAL": 2, "SERIAL": 4, "BIGSERIAL": 8}
# Text and binary types without a declared length: their capacity in bytes (None: unbounded).
_TEXTS = {"TINYTEXT": 255, "TEXT": 65535, "MEDIUMTEXT": 16777215, "LONGTEXT": 4294967295}
_BLOBS = {"TINYBLOB": 255, "BLOB": 65535, "MEDIUMBLOB": 16777215, "LONGBLOB": 4294967295, "VARBINARY": None,
          "BINARY": None}
_CHARS = {"CHAR", "NCHAR", "VARCHAR", "NVARCHAR", "BPCHAR"}
_FLOATS = {"FLOAT": 4, "REAL": 4, "DOUBLE": 8}
_TIMES = {"DATE", "DATETIME", "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMPLTZ", "TIME", "TIMETZ", "YEAR"}

# Bytes per character of the character sets a VARCHAR's length bytes depend on.
CHARSET_BYTES = {"latin1": 1, "ascii": 1, "binary": 1, "cp1252": 1, "latin2": 1, "utf8": 3, "utf8mb3": 3,
                 "utf8mb4": 4, "ucs2": 2, "utf16": 4, "utf16le": 4, "utf32": 4}


@dataclass(frozen=True)
class ColumnType:
    """A column's data type, reduced to what compatibility and storage rules need."""

    name: str                         # upper-case, without the U of sqlglot's unsigned names: INT, VARCHAR
    family: str                       # integer | text | binary | decimal | float | enum | set | time | other
    length: int | None = None         # CHAR/VARCHAR/BINARY length; TEXT/BLOB capacity in bytes; None: none
    precision: int | None = None      # DECIMAL precision, time fractional digits
    scale: int | None = None
    unsigned: bool = False
    values: tuple[str, ...] = ()      # ENUM and SET members
    sql: str = ""

    @property
    def size(self) -> int:
        """Integers and floats: bytes."""
        return _INTEGERS.get(self.name, _FLOATS.get(self.name, 0))


@dataclass
class Column:
    """A column as the schema history defines it."""

    name: str
    type: ColumnType | None
    not_null: bool = False
    has_default: bool = False
    charset: str | None = None
    auto_increment: bool = False
    generated: str | None = None      # stored | virtual
    collation: str | None = None      # as declared (MySQL, MariaDB); None: its character set's default


@dataclass(frozen=True)
class ParsedColumn:
    """A column definition from a statement, with what only the statement says (its default, inline
    constraints, its position)."""

    column: Column
    default: Any = None               # the sqlglot expression of its DEFAULT
    identity: bool = False            # GENERATED ... AS IDENTITY
    inline: frozenset[str] = frozenset()   # primary key, unique, check, references
    position: str | None = None       # FIRST or AFTER x (MySQL)


@dataclass(frozen=True)
class Index:
    """An index (MySQL, MariaDB) as the schema history defines it."""

    name: str                         # PRIMARY for the primary key
    columns: tuple[str, ...]          # lower-cased, in order
    kind: str                         # primary | unique | index | fulltext | spatial


@dataclass
class Table:
    """A table as the schema history defines it."""

    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    charset: str | None = None
    fulltext: bool = False
    indexes: dict[str, Index] = field(default_factory=dict)   # by lower-cased name; empty when not known
    keys_known: bool = False          # whether `indexes` lists them all (a CREATE TABLE, or the live schema)

    def column(self, name: str) -> Column | None:
        """A column by name, case-insensitively."""
        return self.columns.get(name.lower())

    def put(self, column: Column) -> None:
        """Add or replace a column."""
        self.columns[column.name.lower()] = column

    def add_index(self, index: Index) -> None:
        """Record an index (a FULLTEXT one marks the table)."""
        self.indexes[index.name.lower()] = index
        self.fulltext = self.fulltext or index.kind == "fulltext"

    def drop_index(self, name: str) -> Index | None:
        """Forget an index; the one it was, if known."""
        index = self.indexes.pop(name.lower(), None)
        self.fulltext = any(i.kind == "fulltext" for i in self.indexes.values()) if self.keys_known else \
            self.fulltext and not (index is not None and index.kind == "fulltext")
        return index

    @property
    def primary_key(self) -> Index | None:
        """The primary key, if one is known."""
        return self.indexes.get("primary")

    def indexed(self, column: str) -> bool:
        """Whether an index covers this column."""
        return any(column.lower() in index.columns for index in self.indexes.values())

    def unique_within(self, columns: tuple[str, ...]) -> bool:
        """Whether a UNIQUE (or primary) index over some of these columns already makes them unique."""
        wanted = {c.lower() for c in columns}
        return any(index.kind in ("unique", "primary") and set(index.columns) <= wanted
                   for index in self.indexes.values())

    def clustered_on(self) -> Index | None:
        """The index InnoDB stores the rows by: the primary key, else the first UNIQUE index whose columns are
        all NOT NULL (None: a hidden row id, or the keys are not known)."""
        if not self.keys_known:
            return None
        if self.primary_key is not None:
            return self.primary_key
        for index in self.indexes.values():
            columns = [self.column(c) for c in index.columns]
            if index.kind == "unique" and all(c is not None and c.not_null for c in columns):
                return index
        return None


def canonical_charset(name: str | None) -> str | None:
    """A character set by its canonical name (utf8 is utf8mb3), or the one a collation names first
    (utf8mb4_unicode_ci: utf8mb4)."""
    if not name:
        return None
    name = name.lower()
    for known in sorted(CHARSET_BYTES, key=len, reverse=True):
        if name == known or name.startswith(known + "_"):
            return "utf8mb3" if known == "utf8" else known
    return name.split("_", 1)[0]


class Schema:
    """Tables known from earlier statements; `new_tables` are those created by the file being judged."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.new_tables: set[str] = set()
        self.foreign_key_checks = True   # MySQL session state: SET foreign_key_checks = 0
        # PostgreSQL: CHECK (col IS NOT NULL) constraints by name → (table, column), and the columns such a
        # constraint has been validated for (SET NOT NULL then needs no scan, from PostgreSQL 12).
        self.not_null_checks: dict[str, tuple[str, str]] = {}
        self.validated_not_null: set[tuple[str, str]] = set()
        # PostgreSQL: whether the statement being judged runs inside a transaction (the runner's around the
        # file, or an explicit BEGIN), and the constraints added NOT VALID in that transaction.
        self.in_transaction = False
        self.not_valid_in_transaction: set[str] = set()

    def begin_file(self, *, in_transaction: bool = False) -> None:
        """A new file: its session starts afresh (inside a transaction when the runner wraps each file in one),
        and no table is new to it yet."""
        self.new_tables.clear()
        self.foreign_key_checks = True
        self.in_transaction = in_transaction
        self.not_valid_in_transaction.clear()

    def table(self, name: str | None) -> Table | None:
        """A table by name, case-insensitively."""
        return self.tables.get(name.lower()) if name else None

    def column(self, table: str | None, column: str) -> Column | None:
        """A column of a table, if both are known."""
        known = self.table(table)
        return known.column(column) if known else None

    def is_new(self, table: str | None) -> bool:
        """Whether the file being judged created this table (so the running release cannot use it)."""
        return bool(table) and table.lower() in self.new_tables  # type: ignore[union-attr]

    def create(self, table: Table) -> None:
        """Record a table created by the file being judged."""
        self.tables[table.name.lower()] = table
        self.new_tables.add(table.name.lower())

    def add(self, table: Table) -> None:
        """Record a table that exists before the files are judged (read from a live database): known, and
        new to none of them, because the running release may use it."""
        self.tables[table.name.lower()] = table
        self.new_tables.discard(table.name.lower())

    def drop(self, name: str) -> None:
        """Forget a dropped table."""
        self.tables.pop(name.lower(), None)
        self.new_tables.discard(name.lower())

    def rename(self, old: str, new: str) -> None:
        """Follow a renamed table."""
        table = self.tables.pop(old.lower(), None)
        if table is not None:
            table.name = new
            self.tables[new.lower()] = table
        if old.lower() in self.new_tables:
            self.new_tables.discard(old.lower())
            self.new_tables.add(new.lower())


def sqlglot_dialect(dialect: str) -> str:
    """sqlglot's name for a dialect (it reads MariaDB as MySQL)."""
    return "postgres" if dialect == "postgresql" else "mysql"


@contextlib.contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    # sqlglot logs a warning when it falls back to a generic Command; we report that ourselves.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def parse_statement(text: str, dialect: str) -> Any:
    """sqlglot's tree of one statement; None when sqlglot cannot parse it."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        with _quiet_sqlglot():
            trees = sqlglot.parse(text, read=sqlglot_dialect(dialect))
    except (SqlglotError, RecursionError, ValueError):
        return None
    trees = [t for t in trees if t is not None]
    return trees[0] if len(trees) == 1 else None


def is_command(tree: Any) -> bool:
    """Whether sqlglot only recognised the statement's first word (a generic Command)."""
    from sqlglot import exp

    return isinstance(tree, exp.Command)


def _classes(*names: str) -> tuple[type, ...]:
    """sqlglot expression classes by name, those this sqlglot version has."""
    from sqlglot import exp

    return tuple(getattr(exp, name) for name in names if isinstance(getattr(exp, name, None), type))


def _int(node: Any) -> int | None:
    try:
        return int(str(node.name))
    except (AttributeError, ValueError):
        return None


def column_type(datatype: Any, dialect: str) -> ColumnType:
    """Our view of a sqlglot DataType."""
    raw = datatype.this.name if hasattr(datatype.this, "name") else str(datatype.this)
    name = raw.upper()
    unsigned = False
    if name.startswith("U") and (name[1:] in _INTEGERS or name[1:] in ("DECIMAL", "DOUBLE", "FLOAT")):
        name, unsigned = name[1:], True
    sql = datatype.sql(dialect=sqlglot_dialect(dialect))
    if "UNSIGNED" in sql.upper():
        unsigned = True
    params = list(datatype.expressions or [])
    numbers = [_int(p) for p in params]
    first = numbers[0] if numbers else None
    if name in _INTEGERS:
        return ColumnType(name, "integer", unsigned=unsigned, sql=sql)
    if name in ("BOOLEAN", "BOOL"):
        return ColumnType("BOOLEAN", "boolean", sql=sql)
    if name in _CHARS:
        canonical = "CHAR" if name in ("CHAR", "NCHAR", "BPCHAR") else "VARCHAR"
        length = first if first is not None else (1 if canonical == "CHAR" and dialect != "postgresql" else None)
        return ColumnType(canonical, "text", length=length, sql=sql)
    if name in _TEXTS:
        return ColumnType(name, "text", length=None if dialect == "postgresql" else _TEXTS[name], sql=sql)
    if name in _BLOBS or name in {"VARBINARY", "BYTEA"}:
        length = first if name in ("BINARY", "VARBINARY") else _BLOBS.get(name)
        return ColumnType(name, "binary", length=length, sql=sql)
    if name in ("DECIMAL", "NUMERIC", "BIGDECIMAL"):
        precision = first if first is not None else (10 if dialect != "postgresql" else None)
        scale = numbers[1] if len(numbers) > 1 else (0 if precision is not None else None)
        return ColumnType("DECIMAL", "decimal", precision=precision, scale=scale, unsigned=unsigned, sql=sql)
    if name in _FLOATS:
        return ColumnType(name, "float", unsigned=unsigned, sql=sql)
    if name in ("ENUM", "SET"):
        values = tuple(str(p.name) for p in params)
        return ColumnType(name, name.lower(), values=values, sql=sql)
    if name in _TIMES:
        return ColumnType(name, "time", precision=first, sql=sql)
    return ColumnType(name, "other", length=first, sql=sql)


def parse_column(text: str, dialect: str) -> ParsedColumn | None:
    """A column definition (`name type [NOT NULL] [DEFAULT x] ...`); None when it cannot be parsed.

    A MySQL position (`FIRST`, `AFTER col`) at its end is taken off first and kept.
    """
    from sqlglot import exp

    words = lex(text, dialect)
    position = None
    if words and words[-1].kind == "word" and words[-1].value == "FIRST":
        position, text = "FIRST", text[:words[-1].start]
    elif len(words) >= 2 and words[-2].kind == "word" and words[-2].value == "AFTER" and words[-1].is_name:
        position, text = f"AFTER {words[-1].name}", text[:words[-2].start]
    tree = parse_statement(f"CREATE TABLE _conveyor_ ({text})", dialect)
    generated = None
    if tree is None:
        # Older sqlglot versions cannot read MySQL's `AS (expr) STORED|VIRTUAL`: read the rest without it.
        stripped, generated = _without_generated(text, dialect)
        if stripped is not None:
            tree = parse_statement(f"CREATE TABLE _conveyor_ ({stripped})", dialect)
    if not isinstance(tree, exp.Create) or not isinstance(tree.this, exp.Schema):
        return None
    definitions = tree.this.expressions
    if len(definitions) != 1 or not isinstance(definitions[0], exp.ColumnDef):
        return None
    parsed = column_from_definition(definitions[0], dialect, text)
    if generated:
        parsed.column.generated = generated
    return replace(parsed, position=position) if position else parsed


def _without_generated(text: str, dialect: str) -> tuple[str | None, str | None]:
    """A column definition without its `[GENERATED ALWAYS] AS (expr) [STORED|VIRTUAL|PERSISTENT]` clause,
    and which kind it was; (None, None) when it has none."""
    words = lex(text, dialect)
    for index, word in enumerate(words[:-1]):
        following = words[index + 1]
        if word.kind == "word" and word.value == "AS" and following.kind == "punct" and following.value == "(":
            start = word.start
            if index >= 2 and [w.value for w in words[index - 2:index]] == ["GENERATED", "ALWAYS"]:
                start = words[index - 2].start
            depth, end, close = 0, None, index + 1
            for close in range(index + 1, len(words)):
                if words[close].kind == "punct" and words[close].value in "()":
                    depth += 1 if words[close].value == "(" else -1
                    if depth == 0:
                        end = words[close].end
                        break
            if end is None:
                return None, None
            kind = "virtual"
            if close + 1 < len(words) and words[close + 1].value in ("STORED", "PERSISTENT", "VIRTUAL"):
                kind = "virtual" if words[close + 1].value == "VIRTUAL" else "stored"
                end = words[close + 1].end
            return text[:start] + text[end:], kind
    return None, None


def column_from_definition(coldef: Any, dialect: str, text: str | None = None) -> ParsedColumn:
    """Our view of a sqlglot ColumnDef; `text` (the definition as written) fills in what sqlglot's tree
    leaves unclear (generated columns, character sets)."""
    from sqlglot import exp

    kind = coldef.args.get("kind")
    ctype = column_type(kind, dialect) if isinstance(kind, exp.DataType) else None
    column = Column(name=coldef.name, type=ctype)
    default: Any = None
    identity = False
    inline: set[str] = set()
    computed = _classes("ComputedColumnConstraint")
    for constraint in coldef.args.get("constraints") or []:
        item = constraint.args.get("kind") if isinstance(constraint, exp.ColumnConstraint) else constraint
        if isinstance(item, exp.NotNullColumnConstraint):
            column.not_null = not item.args.get("allow_null")
        elif isinstance(item, exp.DefaultColumnConstraint):
            column.has_default, default = True, item.this
        elif isinstance(item, exp.AutoIncrementColumnConstraint):
            column.auto_increment = True
        elif isinstance(item, exp.GeneratedAsIdentityColumnConstraint):
            if item.args.get("expression") is not None:
                column.generated = "stored"
            else:
                identity = True
        elif computed and isinstance(item, computed):
            column.generated = "stored" if getattr(item, "args", {}).get("persisted") else "virtual"
        elif isinstance(item, exp.PrimaryKeyColumnConstraint):
            inline.add("primary key")
            column.not_null = True
        elif isinstance(item, exp.UniqueColumnConstraint):
            inline.add("unique")
        elif isinstance(item, exp.CheckColumnConstraint):
            inline.add("check")
        elif isinstance(item, exp.Reference):
            inline.add("references")
    _fill_from_words(column, inline, text if text is not None else coldef.sql(dialect=sqlglot_dialect(dialect)),
                     dialect)
    if ctype is not None and ctype.name in ("SERIAL", "BIGSERIAL", "SMALLSERIAL"):
        column.not_null = column.has_default = True
    return ParsedColumn(column, default, identity, frozenset(inline))


def _fill_from_words(column: Column, inline: set[str], text: str, dialect: str) -> None:
    """Read a definition's words for what sqlglot versions disagree on."""
    cursor = Words(lex(text, dialect), text)
    cursor.next()  # the column's name
    depth_words = _top_level(cursor)
    values = [w.value if w.kind in ("word", "punct") else "" for w in depth_words]
    for i, value in enumerate(values):
        following = values[i + 1] if i + 1 < len(values) else ""
        if value == "AS" and following == "(" and column.generated is None:
            stored = "STORED" in values or "PERSISTENT" in values
            column.generated = "stored" if stored else "virtual"
        elif value in ("CHARSET", "CHARACTER") and column.charset is None:
            j = i + 2 if value == "CHARACTER" and following == "SET" else i + 1
            if j < len(depth_words) and depth_words[j].is_name:
                column.charset = canonical_charset(depth_words[j].name)
        elif value == "COLLATE" and i + 1 < len(depth_words) and depth_words[i + 1].is_name:
            column.collation = depth_words[i + 1].name.lower()
            column.charset = column.charset or canonical_charset(column.collation)
        elif value == "AUTO_INCREMENT":
            column.auto_increment = True
        elif value == "REFERENCES":
            inline.add("references")
    if column.generated == "virtual" and dialect == "postgresql":
        column.generated = "stored"  # PostgreSQL < 18 only has stored generated columns


def _top_level(cursor: Words) -> list[Any]:
    """The words outside parentheses, with each `(` that opens a group kept as a marker."""
    kept: list[Any] = []
    depth = 0
    for word in cursor.remaining():
        if word.kind == "punct" and word.value == "(":
            if depth == 0:
                kept.append(word)
            depth += 1
        elif word.kind == "punct" and word.value == ")":
            depth -= 1
        elif depth == 0:
            kept.append(word)
    return kept


def bytes_per_char(column: Column | None, table: Table | None) -> int | None:
    """Bytes per character of a column, from its own or its table's character set; None when unknown."""
    charset = (column.charset if column else None) or (table.charset if table else None)
    return CHARSET_BYTES.get(charset) if charset else None


def selects_a_whole_table(source: Any) -> bool:
    """Whether an INSERT's source is a SELECT from a table with neither WHERE nor LIMIT."""
    from sqlglot import exp

    # sqlglot names the FROM clause `from` or (newer) `from_`.
    has_from = bool(source.args.get("from") or source.args.get("from_")) if isinstance(source, exp.Select) else False
    return has_from and not source.args.get("where") and not source.args.get("limit")
