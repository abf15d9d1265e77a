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

from conveyor.migrations.findings import Issue, worst_algorithm
from conveyor.migrations.mysql_alter import Alter
from conveyor.migrations.mysql_server import (
    COPY,
    FEATURES,
    INPLACE,
    INSTANT,
    KEEP_WRITING,
    LOCKED,
    UNPARSED_HINT,
    WORDS,
    MySQLJudgement,
    Server,
    explicit_options,
    parse_version,
    unparsed,
)
from conveyor.migrations.rules_common import Rules, renamed
from conveyor.migrations.sqlschema import Schema, Table
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
    "OPTIMIZE": ("optimize-table", "OPTIMIZE TABLE rebuilds the whole table (InnoDB maps it to ALTER TABLE ... FORCE): "
                 "heavy I/O for its whole length, and replicas lag behind by as long",
                 "run it inside the migration window, or leave it to a maintenance job"),
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
        algorithm, lock = explicit_options(rest)
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
                self.j.add("drop-index", "safe", f"DROP INDEX runs in place ({WORDS[INPLACE]}): {KEEP_WRITING}",
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
                  f"the index is built in place ({WORDS[INPLACE]}): {KEEP_WRITING} while it builds",
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
