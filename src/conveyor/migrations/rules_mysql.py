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
from typing import Any

from conveyor.migrations.createtable import index_definition
from conveyor.migrations.findings import Issue, worst_algorithm
from conveyor.migrations.mysql_alter import Alter
from conveyor.migrations.mysql_server import (
    COPY,
    FEATURES,
    INPLACE,
    INSTANT,
    KEEP_WRITING,
    LOCKED,
    UNIQUE_HINT,
    UNPARSED_HINT,
    WORDS,
    MySQLJudgement,
    Server,
    explicit_options,
    parse_version,
    rebuild,
    unparsed,
)
from conveyor.migrations.rules_common import UNKNOWN_COLUMN_HINT, Rules, renamed
from conveyor.migrations.sqlschema import Index, Schema, Table
from conveyor.migrations.statements import Statement, Words


def judge(statement: Statement, schema: Schema, server: Server) -> tuple[list[Issue], str | None]:
    """The issues of one statement, and the algorithm the server uses for it (ALTER TABLE, CREATE INDEX).

    The schema is updated with what the statement creates or changes.
    """
    judgement = MySQLJudgement("mysql", UNPARSED_HINT)
    MySQLRules(statement, schema, server, judgement).judge()
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
    "REPAIR": ("repair-table", "REPAIR TABLE locks the table while it runs", "run it inside the migration window"),
    "LOCK": ("lock-tables", "LOCK TABLES stops the running release's reads or writes on those tables",
             "remove it: an online ALTER TABLE does not need it; else run inside the migration window"),
    "LOAD": ("load-data", "LOAD DATA writes rows in bulk: a long transaction that holds locks and makes replicas lag",
             "load in batches, or inside the migration window"),
}


class MySQLRules(Rules[Server]):
    j: MySQLJudgement
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
        elif verb == "OPTIMIZE":
            self._optimize()
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

    def _optimize(self) -> None:
        """OPTIMIZE TABLE: InnoDB runs it as ALTER TABLE ... FORCE (the server says "doing recreate + analyze")."""
        w = self.words
        w.take("OPTIMIZE")
        w.take("NO_WRITE_TO_BINLOG") or w.take("LOCAL")
        if not w.take("TABLE"):
            w.take("TABLES")
        for part in w.split(","):
            name = part.name()
            if name is None or self._on_new_table(name):
                continue
            rule, cls, message, hint, algorithm = rebuild(self.schema.table(name), f"OPTIMIZE TABLE {name} (InnoDB "
                                                          "runs it as ALTER TABLE ... FORCE)")
            self.j.add(rule.replace("rebuild-table", "optimize-table"), cls, message, hint, algorithm)

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
                copy = Table(name, dict(source.columns) if source else {}, source.charset if source else None,
                             source.fulltext if source else False, dict(source.indexes) if source else {},
                             source.keys_known if source else False)
                self.j.updates.append(lambda: self.schema.create(copy))
            return
        self._remember_table(temporary=temporary)

    def _create_index(self, kinds: list[str]) -> None:
        w = self.words
        w.take("IF", "NOT", "EXISTS")
        kind = "fulltext" if "FULLTEXT" in kinds else "spatial" if "SPATIAL" in kinds else \
            "unique" if "UNIQUE" in kinds else "index"
        name = w.name() if not w.at("ON") else None
        if not self._index_on():
            return
        table = self._table_name()
        rest = Words(w.remaining(), self.statement.text)
        _, columns = index_definition(Words(w.remaining(), self.statement.text))
        index = Index(name or (columns[0] if columns else "?"), columns, kind)
        known = self.schema.table(table)
        if known is not None:
            self.j.updates.append(lambda: known.add_index(index))
        if self._on_new_table(table):
            return
        algorithm, lock = explicit_options(rest)
        self._index(kind, table, index)
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
            table = w.name()
            if index is not None and index.name.upper() == "PRIMARY":
                self._drop_primary_key(replaced=False, table_name=table)
            elif index is not None and not self._on_new_table(table):
                self._drop_index(table, index.name)
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

    def _index(self, kind: str, table: str | None, index: Index | None = None) -> None:
        """ADD INDEX / CREATE INDEX and their UNIQUE, FULLTEXT and SPATIAL forms (PRIMARY KEY: `_primary_key`)."""
        j = self.j
        if kind == "index":
            j.add("add-index", "safe",
                  f"the index is built in place ({WORDS[INPLACE]}): {KEEP_WRITING} while it builds",
                  algorithm=INPLACE)
        elif kind == "unique":
            # Online (INPLACE, LOCK=NONE, confirmed on MariaDB 10.11). A duplicate in the table, or one a
            # concurrent write makes, aborts the build at its end: the ALTER fails, and nothing changed.
            j.add("add-unique-index", "safe",
                  f"a UNIQUE index is built in place ({WORDS[INPLACE]}): {KEEP_WRITING} while it builds",
                  UNIQUE_HINT, INPLACE)
        elif kind in ("fulltext", "spatial"):
            j.add("add-fulltext-index", "needs-window",
                  f"a {kind.upper()} index is built in place but blocks writes while it builds (LOCK=SHARED); the "
                  "first FULLTEXT index also rebuilds the table", "add it inside the migration window", LOCKED)
        known = self.schema.table(table)
        if known is not None:
            added = index or Index(f"_{kind}_{len(known.indexes)}", (), kind)
            j.updates.append(lambda: known.add_index(added))

    def _primary_key(self, table_name: str, index: Index, *, replacing: bool) -> None:
        """ADD PRIMARY KEY (with DROP PRIMARY KEY in the same statement when `replacing`)."""
        j = self.j
        table = self.schema.table(table_name)
        columns = [table.column(c) for c in index.columns] if table is not None else []
        if table is None or not index.columns or any(c is None for c in columns):
            j.add("add-primary-key", "needs-window",
                  "ADD PRIMARY KEY rebuilds the table (the primary key is how InnoDB stores rows), and fails on a "
                  "duplicate or a NULL; its columns are not known from the earlier migrations, so Conveyor cannot "
                  "tell whether they hold NULL", UNKNOWN_COLUMN_HINT, INPLACE)
        elif nullable := [c.name for c in columns if c is not None and not c.not_null]:
            j.add("add-primary-key-nullable", "breaking",
                  f"ADD PRIMARY KEY makes {', '.join(nullable)} NOT NULL: the running release's writes of NULL to "
                  "them fail (and the ALTER fails if a row holds one)",
                  "make the columns NOT NULL in a contract migration first, once every release writes them", INPLACE)
        elif table.fulltext:
            j.add("add-primary-key", "needs-window",
                  "ADD PRIMARY KEY rebuilds a table with a FULLTEXT index, which the server does only while "
                  "blocking writes (LOCK=SHARED)", "add it inside the migration window", LOCKED)
        else:
            old = table.primary_key
            same = replacing and old is not None and old.columns == index.columns
            unique = same or table.unique_within(index.columns)
            algorithm = INSTANT if same else INPLACE
            how = ("over the same columns: nothing is rebuilt" if same else
                   f"rebuilds the table in place ({WORDS[INPLACE]}): {KEEP_WRITING}; replicas lag while it runs")
            j.add("add-primary-key", "safe", f"ADD PRIMARY KEY on NOT NULL columns {how}",
                  "" if unique else UNIQUE_HINT, algorithm)
        if table is not None:
            j.updates.append(lambda: table.add_index(index))

    def _drop_index(self, table_name: str | None, name: str) -> None:
        """DROP INDEX name [ON table], ALTER TABLE ... DROP INDEX|KEY name."""
        table = self.schema.table(table_name)
        index = table.indexes.get(name.lower()) if table is not None else None
        if index is not None and index.kind == "fulltext":
            self.j.add("drop-fulltext-index", "breaking",
                       f"DROP INDEX {name}: it is a FULLTEXT index, and the running release's MATCH ... AGAINST "
                       "queries on its columns fail without it",
                       "drop it in a contract migration, once no release searches with it")
        elif index is not None and table is not None and table.clustered_on() is index:
            self.j.add("drop-clustered-index", "needs-window",
                       f"{table.name} has no primary key: InnoDB stores its rows by {name} (UNIQUE, NOT NULL), so "
                       "dropping it rebuilds the table around a hidden row id while writes wait",
                       "add a PRIMARY KEY first (in place), or run it inside the migration window", COPY)
        else:
            self.j.add("drop-index", "safe", f"DROP INDEX runs in place ({WORDS[INPLACE]}): {KEEP_WRITING}",
                       algorithm=INPLACE)
        if table is not None:
            self.j.updates.append(lambda: table.drop_index(name))

    def _drop_primary_key(self, *, replaced: bool, table_name: str | None = None) -> None:
        table = self.schema.table(table_name)
        if table is not None:
            self.j.updates.append(lambda: table.drop_index("PRIMARY"))
        if replaced:
            return  # the ADD PRIMARY KEY of the same statement says what the swap does
        self.j.add("drop-primary-key", "needs-window",
                   "DROP PRIMARY KEY without adding another copies the table (ALGORITHM=COPY): writes wait",
                   "drop and add the new primary key in one ALTER TABLE (that rebuilds in place)", COPY)

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
                  f"the server refuses {clause} for this change (it needs {WORDS[claimed]}): the migration will "
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
        alter = Alter(self, table)
        for action in w.split(","):
            alter.action(action)
        alter.finish()




__all__ = ["FEATURES", "MySQLRules", "Server", "judge", "parse_version", "unparsed"]
