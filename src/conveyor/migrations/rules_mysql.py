"""MySQL and MariaDB: each statement judged by what the server's online DDL does with it, by version.

The facts come from the servers' manuals: MySQL 8.0 "Online DDL Operations" (InnoDB) and MariaDB's
"InnoDB Online DDL Operations with the INSTANT/INPLACE/NOCOPY Alter Algorithm". Each ALTER TABLE action is
given the algorithm the server uses for it:

    instant         metadata only: no copy, no lock beyond a moment's metadata lock
    inplace         ALGORITHM=INPLACE, LOCK=NONE: reads and writes continue (some rebuild the table)
    inplace-locked  in place, but concurrent writes are blocked (LOCK=SHARED): FULLTEXT, AUTO_INCREMENT
    copy            ALGORITHM=COPY: the table is copied row by row and writes wait until it is done

`safe` means instant or inplace, and compatible with the release still running. A statement's algorithm is
its heaviest action's, because the server runs one ALTER TABLE with one algorithm.

ALTER TABLE is read action by action (its comma-separated list): sqlglot parses each column definition and
type, and the words around them are read here, because sqlglot reads several MySQL forms (MODIFY with
attributes, CHANGE, FIRST/AFTER, ALGORITHM=, LOCK=) only as a generic command. Other statements are
parsed by sqlglot whole. What neither can read is `unparsed`: needs-window, never silently safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from conveyor.migrations.findings import Cls, Issue, worst_algorithm
from conveyor.migrations.rules_common import (
    UNKNOWN_COLUMN_HINT,
    AlterTable,
    Judgement,
    Rules,
    renamed,
    server_label,
    unparsed_issue,
)
from conveyor.migrations.sqlschema import Column, Schema, Table, bytes_per_char, compare_types
from conveyor.migrations.statements import Statement, Words, lex

INSTANT, INPLACE, LOCKED, COPY = "instant", "inplace", "inplace-locked", "copy"

# The first version of each server with a feature (None: that server does not have it).
FEATURES: dict[str, dict[str, tuple[int, ...] | None]] = {
    # Online DDL (ALGORITHM=INPLACE, LOCK=NONE) at all.
    "online-ddl": {"mysql": (5, 6), "mariadb": (10, 0)},
    # ADD COLUMN as the last column, instantly (MySQL 8.0.12; MariaDB 10.3.2, MDEV-11369).
    "instant-add-column": {"mysql": (8, 0, 12), "mariadb": (10, 3, 2)},
    # ... anywhere in the column list (MySQL 8.0.29; MariaDB 10.4, MDEV-15562).
    "instant-add-column-anywhere": {"mysql": (8, 0, 29), "mariadb": (10, 4)},
    "instant-drop-column": {"mysql": (8, 0, 29), "mariadb": (10, 4)},
    "instant-rename-column": {"mysql": (8, 0, 28), "mariadb": None},
    # Reordering columns (MODIFY ... FIRST/AFTER) without a rebuild: MariaDB 10.4 only.
    "instant-reorder-column": {"mysql": None, "mariadb": (10, 4)},
    # Extending a VARCHAR instantly (MariaDB 10.4.3, MDEV-15563); MySQL extends it in place.
    "instant-varchar-extend": {"mysql": None, "mariadb": (10, 4, 3)},
    # A VARCHAR of fewer than 128 bytes may grow past 255 bytes without a copy (MariaDB 10.4.3).
    "varchar-short-to-any": {"mysql": None, "mariadb": (10, 4, 3)},
    # Extending a VARCHAR in place at all (MySQL 5.7, WL#6554; MariaDB 10.2.2).
    "inplace-varchar-extend": {"mysql": (5, 7), "mariadb": (10, 2, 2)},
    "instant-default": {"mysql": (8, 0, 12), "mariadb": (10, 3)},
    "instant-enum-append": {"mysql": (8, 0, 12), "mariadb": (10, 3, 7)},
    "instant-virtual-column": {"mysql": (8, 0, 12), "mariadb": None},
    "rename-column-syntax": {"mysql": (8, 0), "mariadb": (10, 5, 2)},
    "rename-index": {"mysql": (5, 7), "mariadb": (10, 5, 2)},
}

_WORDS = {INSTANT: "ALGORITHM=INSTANT", INPLACE: "ALGORITHM=INPLACE, LOCK=NONE",
          LOCKED: "ALGORITHM=INPLACE with writes blocked (LOCK=SHARED)", COPY: "ALGORITHM=COPY"}
_KEEP_WRITING = "reads and writes continue"
_UNPARSED_HINT = ("write it as plain statements Conveyor can read (one ALTER action it knows per line helps), "
                  "or run it inside the migration window")


@dataclass(frozen=True)
class Server:
    """The database server the migrations run on: MySQL or MariaDB, and its version if known."""

    flavor: str                              # mysql | mariadb
    version: tuple[int, ...] | None = None   # None: assume a current release

    def has(self, feature: str) -> bool:
        """Whether this server has a feature (a current release is assumed when the version is unknown)."""
        since = FEATURES[feature][self.flavor]
        if since is None:
            return False
        return self.version is None or self.version >= since

    @property
    def label(self) -> str:
        """`MariaDB 10.11.6`, or `MySQL (version not given: a current release assumed)`."""
        return server_label("MariaDB" if self.flavor == "mariadb" else "MySQL", self.version)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """`8.0.35`, `10.11.6-MariaDB-0+deb12u1` or `16` into a tuple of numbers; None when absent."""
    if not text:
        return None
    match = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def unparsed(why: str) -> Issue:
    """The verdict on what cannot be read: needs the window, never silently safe."""
    return unparsed_issue(why, _UNPARSED_HINT)


@dataclass
class _Judgement(Judgement):
    """A MySQL judgement also collects the algorithm each finding claims: the statement's is the heaviest."""

    algorithms: list[str | None] = field(default_factory=list)

    def add(self, rule: str, cls: Cls, message: str, hint: str = "", algorithm: str | None = None) -> None:
        super().add(rule, cls, message, hint)
        self.algorithms.append(algorithm)


def judge(statement: Statement, schema: Schema, server: Server) -> tuple[list[Issue], str | None]:
    """The issues of one statement, and the algorithm the server uses for it (ALTER TABLE, CREATE INDEX).

    The schema is updated with what the statement creates or changes.
    """
    judgement = _Judgement("mysql", _UNPARSED_HINT)
    _Rules(statement, schema, server, judgement).judge()
    return judgement.issues, worst_algorithm(judgement.algorithms)


# Statements that change nothing a running release depends on, recognised by their first word.
_HARMLESS = {"START", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "USE", "SELECT", "SHOW", "GRANT",
             "REVOKE", "EXPLAIN", "DESCRIBE", "DESC", "UNLOCK", "ANALYZE", "CHECK", "CHECKSUM", "XA"}
_CREATE_HARMLESS = {"VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "DATABASE", "SCHEMA", "USER", "ROLE",
                    "SEQUENCE", "SERVER", "TABLESPACE", "SPATIAL REFERENCE SYSTEM", "LOGFILE", "RESOURCE"}
_ALTER_HARMLESS = {"VIEW", "PROCEDURE", "FUNCTION", "EVENT", "DATABASE", "SCHEMA", "USER", "ROLE", "SERVER",
                   "TABLESPACE", "LOGFILE", "SEQUENCE", "INSTANCE", "RESOURCE", "ALGORITHM", "DEFINER", "SQL"}
_DROP_BREAKING = {"VIEW", "PROCEDURE", "FUNCTION", "DATABASE", "SCHEMA", "EVENT", "SEQUENCE"}
_DROP_HARMLESS = {"TRIGGER", "USER", "ROLE", "SERVER", "TABLESPACE", "LOGFILE", "RESOURCE"}
# Statements that always need the migration window, by first word.
_WINDOW_STATEMENTS = {
    "OPTIMIZE": ("optimize-table", "OPTIMIZE TABLE rebuilds the whole table (InnoDB maps it to ALTER TABLE ... FORCE): "
                 "heavy I/O for its whole length, and replicas lag behind by as long",
                 "run it inside the migration window, or leave it to a maintenance job"),
    "REPAIR": ("repair-table", "REPAIR TABLE locks the table while it runs", "run it inside the migration window"),
    "LOCK": ("lock-tables", "LOCK TABLES stops the running release's reads or writes on those tables",
             "remove it: an online ALTER TABLE does not need it; else run inside the migration window"),
    "LOAD": ("load-data", "LOAD DATA writes rows in bulk: a long transaction that holds locks and makes replicas lag",
             "load in batches, or inside the migration window"),
}


class _Rules(Rules[Server]):
    j: _Judgement
    dml = ("INSERT", "REPLACE", "UPDATE", "DELETE", "WITH")
    harmless = _HARMLESS
    window_statements = _WINDOW_STATEMENTS
    drop_breaking = _DROP_BREAKING
    drop_harmless = _DROP_HARMLESS
    insert_select_cost = ": it holds locks on the rows it reads and makes replicas lag"
    update_cost = " while it runs and makes replicas lag"
    update_hint = ("backfill in batches (WHERE id BETWEEN ... or LIMIT, repeated), or run it inside the migration "
                   "window")

    @property
    def dialect(self) -> str:
        return self.server.flavor

    def _other(self, verb: str) -> bool:
        if verb == "RENAME":
            self._rename_tables()
        elif verb == "SET":
            self._set()
        else:
            return False
        return True

    def _bounded(self, tree: Any) -> bool:
        # MySQL's UPDATE and DELETE take a LIMIT: repeated, that is a batched backfill.
        return super()._bounded(tree) or bool(tree.args.get("limit"))

    # -- whole statements -------------------------------------------------------------------------------

    def _set(self) -> None:
        text = self.statement.text
        match = re.search(r"foreign_key_checks\s*(?::=|=)\s*(\w+)", text, re.IGNORECASE)
        if match:
            off = match.group(1).lower() in ("0", "off", "false")
            self.j.updates.append(lambda: setattr(self.schema, "foreign_key_checks", not off))

    def _create(self) -> None:
        w = self.words
        w.take("CREATE")
        w.take("OR", "REPLACE")
        kinds: list[str] = []
        for _ in range(12):
            word = w.peek()
            if word is None:
                break
            if word.kind == "word" and word.value in ("TABLE", "INDEX"):
                break
            if word.kind == "word" and word.value in _CREATE_HARMLESS:
                return
            kinds.append(word.value)
            w.next()
        word = w.next()
        if word is None:
            self.j.unparsed("an incomplete CREATE")
            return
        if word.value == "INDEX":
            self._create_index(kinds)
        else:
            self._create_table(temporary="TEMPORARY" in kinds)

    def _create_table(self, *, temporary: bool) -> None:
        if "SELECT" in self.keywords:
            self.j.add("create-table-select", "needs-window",
                       "CREATE TABLE ... SELECT copies rows while holding shared locks on the rows it reads",
                       "create the table, then backfill it in batches, or run it inside the migration window")
        w = self.words
        w.take("IF", "NOT", "EXISTS")
        name = w.name()
        if w.take("LIKE") or (w.at("(") and w.peek(1) is not None and w.peek(1).value == "LIKE"):  # type: ignore[union-attr]
            w.take("(")
            w.take("LIKE")
            source = self.schema.table(w.name())
            if name and not temporary:
                copy = Table(name, dict(source.columns) if source else {}, source.charset if source else None)
                self.j.updates.append(lambda: self.schema.create(copy))
            return
        self._remember_table(temporary=temporary)

    def _create_index(self, kinds: list[str]) -> None:
        w = self.words
        w.take("IF", "NOT", "EXISTS")
        kind = "fulltext" if "FULLTEXT" in kinds else "spatial" if "SPATIAL" in kinds else \
            "unique" if "UNIQUE" in kinds else "index"
        if not self._index_on():
            return
        table = self._table_name()
        if self._on_new_table(table):
            return
        rest = Words(w.remaining(), self.statement.text)
        algorithm, lock = _explicit_options(rest)
        self._index(kind, table)
        self._check_explicit(algorithm, lock)

    def _drop(self) -> None:
        w = self.words
        w.take("DROP")
        temporary = w.take("TEMPORARY")
        kind = w.next()
        if kind is None or kind.kind != "word":
            self.j.unparsed("an incomplete DROP")
            return
        if kind.value in ("TABLE", "TABLES"):
            self._drop_tables(temporary=temporary)
        elif kind.value == "INDEX":
            index = w.next()
            w.take("ON")
            w.name()
            if index is not None and index.name.upper() == "PRIMARY":
                self._drop_primary_key(replaced=False)
            else:
                self.j.add("drop-index", "safe", f"DROP INDEX runs in place ({_WORDS[INPLACE]}): {_KEEP_WRITING}",
                           algorithm=INPLACE)
        else:
            self._drop_object(kind.value)

    def _rename_tables(self) -> None:
        w = self.words
        w.take("RENAME")
        if not w.take("TABLE") and not w.take("TABLES"):
            if w.at_any("USER"):
                return
            self.j.unparsed("RENAME of something other than a table")
            return
        for part in w.split(","):
            names = renamed(part, self.j, "RENAME TABLE")
            if names is not None:
                self._rename_table(*names)

    def _rename_table(self, old: str, new: str) -> None:
        if not self._on_new_table(old):
            self.j.add("rename-table", "breaking",
                       f"renaming {old} to {new}: the running release still uses the old name",
                       "create the new table (or a view) beside the old one and move the code first; rename or drop "
                       "in a contract migration", INPLACE)
        self.j.updates.append(lambda: self.schema.rename(old, new))

    def _truncated(self, name: str | None) -> None:
        self.j.add("truncate-table", "breaking",
                   f"TRUNCATE {name} deletes every row the running release reads (and takes an exclusive lock)",
                   "delete in a contract migration once no release needs the data")

    # -- indexes and explicit clauses, shared by CREATE INDEX and ALTER TABLE ---------------------------

    def _index(self, kind: str, table: str | None) -> None:
        """ADD INDEX / CREATE INDEX and their UNIQUE, FULLTEXT, SPATIAL and PRIMARY KEY forms."""
        j = self.j
        if kind == "index":
            j.add("add-index", "safe",
                  f"the index is built in place ({_WORDS[INPLACE]}): {_KEEP_WRITING} while it builds",
                  algorithm=INPLACE)
        elif kind == "unique":
            # Online (INPLACE, LOCK=NONE), but the build fails at its very end if the table holds a duplicate,
            # or if a concurrent write creates one even for a moment (an upsert, a retried insert): the MySQL
            # manual's online DDL notes say such a write aborts the whole ALTER, after all the work. And from
            # then on the running release's writes that duplicate a value fail. Both want a quiet moment and a
            # check first: needs-window, though the server would run it online.
            j.add("add-unique-index", "needs-window",
                  "a UNIQUE index is built in place with writes continuing, but the build aborts at its end if the "
                  "table holds a duplicate or a concurrent write creates one, and from then on the running "
                  "release's writes that duplicate a value fail",
                  "check for duplicates (SELECT col, COUNT(*) ... GROUP BY col HAVING COUNT(*) > 1), then add it "
                  "inside the migration window", INPLACE)
        elif kind in ("fulltext", "spatial"):
            j.add("add-fulltext-index", "needs-window",
                  f"a {kind.upper()} index is built in place but blocks writes while it builds (LOCK=SHARED); the "
                  "first FULLTEXT index also rebuilds the table", "add it inside the migration window", LOCKED)
            known = self.schema.table(table)
            if known is not None and kind == "fulltext":
                j.updates.append(lambda: setattr(known, "fulltext", True))
        elif kind == "primary":
            j.add("add-primary-key", "needs-window",
                  "ADD PRIMARY KEY rebuilds the table (the primary key is how InnoDB stores rows), and fails on a "
                  "duplicate or a NULL",
                  "add the primary key when the table is created, or inside the migration window", INPLACE)

    def _drop_primary_key(self, *, replaced: bool) -> None:
        if replaced:
            return  # the ADD PRIMARY KEY of the same statement already says it rebuilds the table, in place
        self.j.add("drop-primary-key", "needs-window",
                   "DROP PRIMARY KEY without adding another copies the table (ALGORITHM=COPY): writes wait",
                   "drop and add the new primary key in one ALTER TABLE (that rebuilds in place), inside the "
                   "migration window", COPY)

    def _check_explicit(self, algorithm: str | None, lock: str | None) -> None:
        """What an explicit ALGORITHM= or LOCK= clause means for the statement."""
        j = self.j
        claimed = worst_algorithm(j.algorithms)
        order = [INSTANT, INPLACE, LOCKED, COPY]
        if lock in ("SHARED", "EXCLUSIVE"):
            j.add("explicit-lock", "needs-window", f"LOCK={lock} blocks the running release's writes"
                  + (" and reads" if lock == "EXCLUSIVE" else ""),
                  "use LOCK=NONE, or run it inside the migration window")
        if algorithm == "COPY":
            j.add("algorithm-copy", "needs-window", "ALGORITHM=COPY copies the table: writes wait",
                  "leave ALGORITHM out (the server picks the mildest), or run it inside the migration window", COPY)
            return
        allowed = {"INSTANT": INSTANT, "NOCOPY": INPLACE, "INPLACE": INPLACE}.get(algorithm or "")
        if lock == "NONE" and claimed in (LOCKED, COPY):
            allowed = INPLACE
        if allowed and claimed and order.index(claimed) > order.index(allowed):
            clause = f"ALGORITHM={algorithm}" if algorithm else "LOCK=NONE"
            j.add("algorithm-refused", "needs-window",
                  f"the server refuses {clause} for this change (it needs {_WORDS[claimed]}): the migration will "
                  "fail", "change the statement, or drop the clause and run it inside the migration window")

    # -- ALTER TABLE ------------------------------------------------------------------------------------

    def _alter(self) -> None:
        w = self.words
        w.take("ALTER")
        w.take("ONLINE")
        w.take("IGNORE")
        if not w.take("TABLE"):
            word = w.peek()
            if word is not None and word.value in _ALTER_HARMLESS:
                return
            self.j.unparsed(f"ALTER {word.value if word else ''} is not something Conveyor has a rule for")
            return
        w.take("IF", "EXISTS")
        table = w.name()
        if table is None:
            self.j.unparsed("ALTER TABLE without a table name")
            return
        if w.take("WAIT"):
            w.next()
        w.take("NOWAIT")
        alter = _Alter(self, table)
        for action in w.split(","):
            alter.action(action)
        alter.finish()


def _explicit_options(words: Words) -> tuple[str | None, str | None]:
    """ALGORITHM [=] x and LOCK [=] x among some words."""
    algorithm = lock = None
    while not words.done():
        if words.take("ALGORITHM"):
            words.take("=")
            value = words.next()
            algorithm = value.value if value else None
        elif words.take("LOCK"):
            words.take("=")
            value = words.next()
            lock = value.value if value else None
        else:
            words.next()
    return algorithm, lock


def _enum_bytes(family: str, count: int) -> int:
    """Bytes an ENUM or SET with `count` members takes."""
    if family == "enum":
        return 1 if count <= 255 else 2
    return next(size for limit, size in ((8, 1), (16, 2), (24, 3), (32, 4), (64, 8)) if count <= limit)


class _Alter(AlterTable[Server]):
    """One ALTER TABLE: its actions judged one by one, then as a whole."""

    rules: _Rules
    j: _Judgement

    def __init__(self, rules: _Rules, table: str) -> None:
        super().__init__(rules, table)
        self.algorithm: str | None = None
        self.lock: str | None = None
        self.drops_primary_key = False
        self.adds_primary_key = False

    def add(self, rule: str, cls: Cls, message: str, hint: str = "", algorithm: str | None = None) -> None:
        self.j.add(rule, cls, message, hint, algorithm)

    # -- one action -------------------------------------------------------------------------------------

    def action(self, a: Words) -> None:
        if a.take("ADD"):
            self._add(a)
        elif a.take("DROP"):
            self._drop(a)
        elif a.take("MODIFY"):
            a.take("COLUMN")
            a.take("IF", "EXISTS")
            self._modify(None, a.rest())
        elif a.take("CHANGE"):
            a.take("COLUMN")
            a.take("IF", "EXISTS")
            old = a.name()
            if old is None:
                self.j.unparsed("CHANGE without a column name")
                return
            self._modify(old, a.rest())
        elif a.take("RENAME"):
            self._rename(a)
        elif a.at("ALTER"):
            self._alter_column(a)
        elif a.take("CONVERT", "TO"):
            self._convert(a)
        else:
            self._options(a)

    def _add(self, a: Words) -> None:
        if a.take("COLUMN"):
            a.take("IF", "NOT", "EXISTS")
            self._add_columns(a)
            return
        if a.at_any("INDEX", "KEY"):
            a.next()
            self.rules._index("index", self.name)
            return
        if a.at_any("FULLTEXT", "SPATIAL"):
            kind = a.next().value.lower()  # type: ignore[union-attr]
            self.rules._index(kind, self.name)
            return
        if a.take("CONSTRAINT") and not a.at_any("PRIMARY", "UNIQUE", "FOREIGN", "CHECK"):
            a.next()  # the constraint's name
        if a.take("PRIMARY", "KEY"):
            self.adds_primary_key = True
            self.rules._index("primary", self.name)
        elif a.take("UNIQUE"):
            self.rules._index("unique", self.name)
        elif a.take("FOREIGN", "KEY"):
            self._add_foreign_key()
        elif a.take("CHECK"):
            self.add("add-check-constraint", "needs-window",
                     "ADD CHECK reads every row to validate it, copying the table (ALGORITHM=COPY): writes wait",
                     "add it inside the migration window", COPY)
        elif a.at_any("PARTITION"):
            self._partitioning("ADD PARTITION")
        else:
            a.take("IF", "NOT", "EXISTS")
            self._add_columns(a)

    def _add_columns(self, a: Words) -> None:
        if a.at("("):
            text = a.rest().strip()[1:-1]
            inner = Words(lex(text, self.server.flavor), text)
            for part in inner.split(","):
                self._add_column(part.text())
            return
        self._add_column(a.rest())

    def _add_column(self, text: str) -> None:
        parsed = self._parse_column(text)
        if parsed is None:
            return
        column = parsed.column
        if column.generated == "stored":
            self.add("add-stored-generated-column", "needs-window",
                     f"adding STORED generated column {column.name} computes it for every row, copying the table "
                     "(ALGORITHM=COPY): writes wait", "add it as VIRTUAL, or inside the migration window", COPY)
        elif column.generated == "virtual":
            algorithm = INSTANT if self.server.has("instant-virtual-column") else INPLACE
            self.add("add-virtual-column", "safe",
                     f"adding VIRTUAL column {column.name} changes only metadata ({_WORDS[algorithm]}) on "
                     f"{self.server.label}", algorithm=algorithm)
        elif column.auto_increment:
            self.add("add-auto-increment-column", "needs-window",
                     f"adding AUTO_INCREMENT column {column.name} rebuilds the table and blocks writes while it "
                     "numbers the rows (LOCK=SHARED)", "add it inside the migration window", LOCKED)
        else:
            algorithm = self._add_column_algorithm(parsed.position)
            fulltext = self.table is not None and self.table.fulltext
            how = ("changes only metadata: instant" if algorithm == INSTANT else
                   "copies the table" if algorithm == COPY else
                   "runs in place with reads and writes continuing, but InnoDB rebuilds the table: replicas lag "
                   "while it runs")
            if column.not_null and not column.has_default:
                self.add("add-column-not-null-no-default", "breaking",
                         f"column {column.name} is NOT NULL without a DEFAULT: the running release's INSERTs do not "
                         "name it, and fail",
                         "give it a DEFAULT, or add it NULL now and make it NOT NULL in a contract migration once "
                         "every release writes it", algorithm)
            elif fulltext and algorithm != COPY:
                # A table with a FULLTEXT index is rebuilt in place, but the server refuses LOCK=NONE for it.
                self.add("add-column-fulltext-table", "needs-window",
                         f"ADD COLUMN {column.name} rebuilds a table that has a FULLTEXT index, which the server does "
                         "in place only while blocking writes (LOCK=SHARED)", "add it inside the migration window",
                         LOCKED)
            else:
                self.add("add-column", "safe",
                         f"ADD COLUMN {column.name} {how} ({_WORDS[algorithm]} on {self.server.label})",
                         algorithm=algorithm)
        if "primary key" in parsed.inline:
            self.adds_primary_key = True
            self.rules._index("primary", self.name)
        if "unique" in parsed.inline:
            self.rules._index("unique", self.name)
        self._put_later(column)

    def _add_column_algorithm(self, position: str | None) -> str:
        if not self.server.has("online-ddl"):
            return COPY
        fulltext = self.table is not None and self.table.fulltext
        if self.server.has("instant-add-column") and not fulltext and (
                position is None or self.server.has("instant-add-column-anywhere")):
            return INSTANT
        return INPLACE

    def _add_foreign_key(self) -> None:
        if not self.schema.foreign_key_checks:
            self.add("add-foreign-key-unchecked", "safe",
                     f"with foreign_key_checks=0 the foreign key is added in place ({_WORDS[INPLACE]}) without "
                     "checking existing rows", "make sure existing rows satisfy it: the server did not check",
                     INPLACE)
            return
        self.add("add-foreign-key", "needs-window",
                 "ADD FOREIGN KEY with foreign_key_checks on copies the table (ALGORITHM=COPY) to check every row: "
                 "writes wait",
                 "SET foreign_key_checks=0 before it in the same migration (then it runs in place, unchecked) "
                 "after checking the rows yourself, or run it inside the migration window", COPY)

    def _drop(self, a: Words) -> None:
        if a.take("PRIMARY", "KEY"):
            self.drops_primary_key = True
        elif a.at_any("INDEX", "KEY"):
            self.add("drop-index", "safe", f"DROP INDEX runs in place ({_WORDS[INPLACE]}): {_KEEP_WRITING}",
                     algorithm=INPLACE)
        elif a.take("FOREIGN", "KEY") or a.at_any("CHECK", "CONSTRAINT"):
            self.add("drop-constraint", "safe", "dropping a constraint changes only metadata, in place",
                     algorithm=INPLACE)
        elif a.at_any("PARTITION"):
            self.add("drop-partition", "breaking", "DROP PARTITION deletes the rows it holds",
                     "drop partitions in a contract migration once no release reads those rows")
        else:
            name = self._drop_column(a)
            if name is None:
                return
            algorithm = INSTANT if self.server.has("instant-drop-column") else INPLACE
            self.add("drop-column", "breaking",
                     f"DROP COLUMN {name}: the running release still reads and writes it",
                     "stop using the column in a release first (make it NULL or give it a DEFAULT now); drop it in a "
                     "contract migration", algorithm)

    def _rename(self, a: Words) -> None:
        if a.take("COLUMN"):
            names = renamed(a, self.j, "RENAME COLUMN")
            if names is not None:
                self._rename_column(*names)
            return
        if a.at_any("INDEX", "KEY"):
            self.add("rename-index", "safe", f"RENAME INDEX changes only metadata, in place ({_WORDS[INPLACE]})",
                     algorithm=INPLACE)
            return
        if not a.take("TO"):
            a.take("AS")
        new_name = a.name()
        if new_name is None:
            self.j.unparsed("a RENAME Conveyor cannot read")
            return
        self.rules._rename_table(self.name, new_name)

    def _rename_column(self, old: str, new: str) -> None:
        algorithm = INSTANT if self.server.has("instant-rename-column") else INPLACE
        self.add("rename-column", "breaking",
                 f"renaming column {old} to {new}: the running release still uses the old name",
                 "add the new column, write both from the code, backfill, move reads; drop the old one in a contract "
                 "migration", algorithm)
        self._rename_later(old, new)

    def _alter_column(self, a: Words) -> None:
        a.take("ALTER")
        if a.take("INDEX"):
            a.name()
            self.add("alter-index", "safe", "changing an index's visibility changes only metadata",
                     algorithm=INPLACE)
            return
        a.take("COLUMN")
        name = a.name()
        if name is None:
            self.j.unparsed("ALTER COLUMN without a column name")
            return
        existing = self.table.column(name) if self.table else None
        algorithm = INSTANT if self.server.has("instant-default") else INPLACE
        if a.take("SET", "DEFAULT"):
            self.add("set-default", "safe", f"setting the default of {name} changes only metadata "
                     f"({_WORDS[algorithm]})", algorithm=algorithm)
            self._set_later(existing, "has_default", True)
        elif a.take("DROP", "DEFAULT"):
            if existing is not None and existing.not_null:
                self.add("drop-default-not-null", "breaking",
                         f"{name} is NOT NULL: without its default the running release's INSERTs that leave it out "
                         "fail", "drop the default in a contract migration, once every release writes the column",
                         algorithm)
            else:
                self.add("set-default", "safe", f"dropping the default of {name} changes only metadata",
                         algorithm=algorithm)
            self._set_later(existing, "has_default", False)
        elif (a.take("SET") and a.at_any("VISIBLE", "INVISIBLE")) or a.at_any("VISIBLE", "INVISIBLE"):
            self.add("column-visibility", "safe", "changing a column's visibility changes only metadata",
                     algorithm=algorithm)
        else:
            self.j.unparsed("an ALTER COLUMN Conveyor cannot read")

    def _convert(self, a: Words) -> None:
        if not (a.take("CHARACTER", "SET") or a.take("CHARSET")):
            self.j.unparsed("a CONVERT TO Conveyor cannot read")
            return
        a.take("=")
        charset = a.next()
        self.add("convert-charset", "needs-window",
                 "CONVERT TO CHARACTER SET re-encodes every string column, copying the table (ALGORITHM=COPY): "
                 "writes wait", "run it inside the migration window (or with an online schema change tool)", COPY)
        table = self.table
        if table is not None and charset is not None:
            name = charset.name.lower()

            def follow() -> None:
                table.charset = name
                for column in table.columns.values():
                    if column.type is not None and column.type.family == "text":
                        column.charset = name
            self.j.updates.append(follow)

    def _options(self, a: Words) -> None:
        """Table options (several may share one action, without commas), ALGORITHM= and LOCK=."""
        while not a.done():
            a.take("DEFAULT")
            if a.take("CHARACTER", "SET") or a.take("CHARSET") or a.take("COLLATE"):
                a.take("=")
                value = a.next()
                self.add("table-charset", "safe", "changing the table's default character set or collation applies "
                         "to columns added later; existing columns keep theirs", algorithm=INPLACE)
                table = self.table
                if table is not None and value is not None and value.kind != "punct":
                    name = value.name.lower()
                    if "_" not in name:  # a collation like utf8mb4_bin names its character set first
                        self.j.updates.append(lambda t=table, n=name: setattr(t, "charset", n))  # type: ignore[misc]
            elif a.take("ENGINE"):
                a.take("=")
                engine = a.next()
                innodb = engine is not None and engine.name.lower() == "innodb"
                self.add("rebuild-table", "needs-window",
                         "ENGINE= rebuilds the whole table" + (" in place" if innodb else ", copying it: writes wait"),
                         "run it inside the migration window", INPLACE if innodb else COPY)
            elif a.at_any("ROW_FORMAT", "KEY_BLOCK_SIZE", "FORCE"):
                option = a.next().value  # type: ignore[union-attr]
                if option != "FORCE":
                    a.take("=")
                    a.next()
                self.add("rebuild-table", "needs-window",
                         f"{option} rebuilds the whole table: heavy I/O for its whole length, and replicas lag "
                         "behind by as long", "run it inside the migration window", INPLACE)
            elif a.at_any("AUTO_INCREMENT", "COMMENT", "STATS_PERSISTENT", "STATS_AUTO_RECALC",
                          "STATS_SAMPLE_PAGES", "PAGE_CHECKSUM", "MAX_ROWS", "MIN_ROWS", "AVG_ROW_LENGTH"):
                option = a.next().value  # type: ignore[union-attr]
                a.take("=")
                a.next()
                self.add("table-option", "safe", f"{option} changes only metadata", algorithm=INPLACE)
            elif a.take("ALGORITHM"):
                a.take("=")
                value = a.next()
                self.algorithm = value.value if value else None
            elif a.take("LOCK"):
                a.take("=")
                value = a.next()
                self.lock = value.value if value else None
            elif a.take("ORDER", "BY"):
                self.add("order-by", "needs-window", "ORDER BY rewrites the whole table (ALGORITHM=COPY)",
                         "leave it out, or run it inside the migration window", COPY)
                return
            elif a.at_any("PARTITION", "REMOVE", "COALESCE", "REORGANIZE", "EXCHANGE", "TRUNCATE", "ANALYZE",
                          "CHECK", "OPTIMIZE", "REBUILD", "REPAIR", "DISCARD", "IMPORT"):
                self._partitioning(a.rest())
                return
            elif a.take("ENABLE", "KEYS") or a.take("DISABLE", "KEYS"):
                continue
            else:
                self.j.unparsed(f"the ALTER TABLE action {a.rest()[:40]!r}")
                return

    def _partitioning(self, what: str) -> None:
        truncate = what.upper().startswith("TRUNCATE")
        if truncate:
            self.add("drop-partition", "breaking", "TRUNCATE PARTITION deletes the rows it holds",
                     "truncate partitions in a contract migration once no release reads those rows")
            return
        self.add("partitioning", "needs-window",
                 "partitioning changes move rows between partitions or rebuild the table: writes wait",
                 "run it inside the migration window")

    # -- a column definition compared with the one it replaces ------------------------------------------

    def _modify(self, old_name: str | None, text: str) -> None:
        parsed = self._parse_column(text)
        if parsed is None:
            return
        new = parsed.column
        old_name = old_name or new.name
        if old_name.lower() != new.name.lower():
            self._rename_column(old_name, new.name)
        existing = self.table.column(old_name) if self.table else None
        self._compare(existing, new, parsed.position)
        table = self.table
        if table is not None:
            def follow() -> None:
                table.columns.pop(old_name.lower(), None)
                table.put(new)  # without its own CHARACTER SET it now has the table's default
            self.j.updates.append(follow)

    def _compare(self, existing: Column | None, new: Column, position: str | None) -> None:
        if existing is None or existing.type is None or new.type is None:
            self.add("modify-column-unknown", "needs-window",
                     f"the current definition of {new.name} is not known from the earlier migrations, so Conveyor "
                     "cannot tell whether this changes its type (a type change copies the table, and may break the "
                     "running release)", UNKNOWN_COLUMN_HINT)
            return
        old_type, new_type = existing.type, new.type
        table_charset = self.table.charset if self.table else None
        old_charset = existing.charset or table_charset
        # MODIFY/CHANGE without CHARACTER SET gives the column the table's default character set, not the one
        # it had: a column with its own character set is re-encoded then.
        new_charset = new.charset or table_charset
        if new_charset and old_charset and new_charset != old_charset and new_type.family == "text":
            implicit = "" if new.charset else " (no CHARACTER SET given: the table's default applies)"
            self.add("change-column-charset", "needs-window",
                     f"changing the character set of {new.name} from {old_charset} to {new_charset}{implicit} "
                     "re-encodes it, copying the table (ALGORITHM=COPY): writes wait",
                     "say the column's CHARACTER SET in the MODIFY to keep it, or run it inside the migration window",
                     COPY)
            return
        bpc = bytes_per_char(new if new.charset else existing, self.table)
        relation = compare_types(old_type, new_type, bpc or 4)
        if relation == "same":
            self._same_type(existing, new, position)
            return
        if relation == "widen":
            self._widen(existing, new, bpc)
        else:
            self.add("change-column-type", "needs-window",
                     f"changing {new.name} from {old_type.sql} to {new_type.sql} copies the table "
                     "(ALGORITHM=COPY): writes wait", "run it inside the migration window", COPY)
            self._narrowed(new.name, old_type, new_type, relation)
        self._nullability(existing, new, report_relaxing=False)

    def _same_type(self, existing: Column, new: Column, position: str | None) -> None:
        if existing.not_null != new.not_null:
            self._nullability(existing, new, report_relaxing=True)
        elif position is not None:
            algorithm = INSTANT if self.server.has("instant-reorder-column") else INPLACE
            rebuild = "" if algorithm == INSTANT else ", rebuilding the table in place"
            self.add("reorder-column", "safe", f"moving {new.name} ({position}) keeps its values{rebuild} "
                     f"({_WORDS[algorithm]} on {self.server.label})", algorithm=algorithm)
        else:
            self.add("modify-column-attributes", "safe",
                     f"{new.name} keeps its type and nullability: only its attributes change, in place",
                     algorithm=INPLACE)
        if existing.has_default and not new.has_default and new.not_null and existing.not_null:
            self.add("drop-default-not-null", "breaking",
                     f"{new.name} is NOT NULL and loses its default: the running release's INSERTs that leave it "
                     "out fail", "keep the DEFAULT until every release writes the column")

    def _nullability(self, existing: Column, new: Column, *, report_relaxing: bool) -> None:
        if new.not_null and not existing.not_null:
            self.add("set-not-null", "needs-window",
                     f"making {new.name} NOT NULL rebuilds the table, and fails if any row holds NULL (or the "
                     "running release writes one meanwhile)",
                     "backfill the NULLs first, make sure every release writes the column, then run it inside the "
                     "migration window", INPLACE)
        elif report_relaxing and existing.not_null and not new.not_null:
            self.add("drop-not-null", "safe",
                     f"making {new.name} NULL-able rebuilds the table in place ({_WORDS[INPLACE]}): {_KEEP_WRITING}",
                     algorithm=INPLACE)

    def _widen(self, existing: Column, new: Column, bpc: int | None) -> None:
        old_type, new_type = existing.type, new.type
        assert old_type is not None
        assert new_type is not None
        if old_type.name == new_type.name == "VARCHAR" and old_type.length and new_type.length:
            self._widen_varchar(new.name, old_type.length, new_type.length, bpc)
        elif old_type.family in ("enum", "set") and new_type.values[:len(old_type.values)] == old_type.values \
                and _enum_bytes(old_type.family, len(old_type.values)) == _enum_bytes(new_type.family,
                                                                                      len(new_type.values)):
            algorithm = INSTANT if self.server.has("instant-enum-append") else INPLACE
            self.add("extend-enum", "safe", f"adding members at the end of {new.name}'s "
                     f"{old_type.family.upper()} changes only metadata ({_WORDS[algorithm]})", algorithm=algorithm)
        else:
            self.add("change-column-type", "needs-window",
                     f"changing {new.name} from {old_type.sql} to {new_type.sql} copies the table "
                     "(ALGORITHM=COPY): writes wait; the new type holds every old value, so the running release "
                     "is not affected", "run it inside the migration window", COPY)

    def _widen_varchar(self, name: str, old: int, new: int, bpc: int | None) -> None:
        # The row stores a VARCHAR's length in 1 byte up to 255 bytes, in 2 beyond: InnoDB can extend a column
        # in place only while that prefix stays the same size. Without a known character set, both 1 and 4
        # bytes per character must agree.
        candidates = [bpc] if bpc else [1, 4]
        same_class = all((old * b <= 255) == (new * b <= 255) for b in candidates)
        short_to_any = self.server.has("varchar-short-to-any") and all(old * b < 128 for b in candidates)
        if self.server.has("inplace-varchar-extend") and (same_class or short_to_any):
            algorithm = INSTANT if self.server.has("instant-varchar-extend") else INPLACE
            self.add("widen-varchar", "safe",
                     f"extending {name} from VARCHAR({old}) to VARCHAR({new}) keeps its length prefix: "
                     f"{'metadata only' if algorithm == INSTANT else 'in place'} ({_WORDS[algorithm]} on "
                     f"{self.server.label})", algorithm=algorithm)
            return
        why = ("its length prefix grows from 1 to 2 bytes (past 255 bytes)" if bpc else
               "it may cross 255 bytes, where its length prefix grows to 2 bytes, and its character set is not "
               "known")
        self.add("widen-varchar-copy", "needs-window",
                 f"extending {name} from VARCHAR({old}) to VARCHAR({new}) copies the table (ALGORITHM=COPY): {why}",
                 "run it inside the migration window" + ("" if bpc else "; name the CHARACTER SET of the column or "
                                                         "the table's DEFAULT CHARSET in the migrations so Conveyor "
                                                         "knows"), COPY)

    # -- the statement as a whole -----------------------------------------------------------------------

    def finish(self) -> None:
        if not self.server.has("online-ddl"):
            self.add("no-online-ddl", "needs-window",
                     f"{self.server.label} has no online DDL: ALTER TABLE copies the table and writes wait",
                     "run it inside the migration window", COPY)
        if self.drops_primary_key:
            self.rules._drop_primary_key(replaced=self.adds_primary_key)
        super().finish()
        self.rules._check_explicit(self.algorithm, self.lock)


__all__ = ["FEATURES", "Server", "judge", "parse_version", "unparsed"]
