"""PostgreSQL: Conveyor's own rules, beside squawk's lock and rewrite findings.

These rules know what squawk does not: which changes the release still running cannot live with (dropping
or renaming what it uses, NOT NULL without a default, narrowing a type) and the schema history of the
migration directory (is this table new in this migration; what type does this column have now). They also
cover squawk's main lock and rewrite cases, so that a machine without squawk still gets a useful verdict.

Locks, from the PostgreSQL manual: every ALTER TABLE takes ACCESS EXCLUSIVE (for a moment when nothing is
rewritten); CREATE INDEX takes SHARE (writes wait) unless CONCURRENTLY; SET NOT NULL scans the table under
ACCESS EXCLUSIVE unless a validated CHECK (col IS NOT NULL) proves it (12+); adding a column with a
non-volatile default is metadata only from 11; changing a type rewrites the table unless the types are
binary coercible (varchar(n) to a longer varchar or to text, numeric to a wider precision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conveyor.migrations.findings import Issue
from conveyor.migrations.rules_common import (
    UNKNOWN_COLUMN_HINT,
    AlterTable,
    Judgement,
    Rules,
    renamed,
    server_label,
    unparsed_issue,
)
from conveyor.migrations.sqlschema import Column, ColumnType, Schema, compare_types, parse_column
from conveyor.migrations.statements import Statement, Words

FEATURES: dict[str, tuple[int, ...]] = {
    "fast-default": (11,),              # ADD COLUMN ... DEFAULT <non-volatile> without a rewrite
    "not-null-from-check": (12,),       # SET NOT NULL skips its scan when a valid CHECK proves it
    "reindex-concurrently": (12,),
    "enum-value-in-transaction": (12,),
    "detach-concurrently": (14,),
}

# Functions whose value does not change row by row: a default calling only these needs no rewrite (11+).
_NOT_VOLATILE = {"now", "current_timestamp", "current_date", "current_time", "localtime", "localtimestamp",
                 "transaction_timestamp", "statement_timestamp", "current_user", "session_user", "user",
                 "current_schema", "current_role", "lower", "upper", "coalesce", "concat", "nullif", "greatest",
                 "least", "abs", "round", "array", "to_jsonb", "to_json", "jsonb_build_object", "json_build_object",
                 "jsonb_build_array", "json_build_array", "make_interval", "interval", "date_trunc", "cast",
                 "trycast", "timestamp", "currenttimestamp", "currentdate", "currenttime"}

_HARMLESS = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "SET", "RESET",
             "SELECT", "SHOW", "GRANT", "REVOKE", "COMMENT", "ANALYZE", "EXPLAIN", "NOTIFY", "LISTEN", "UNLISTEN",
             "DISCARD", "SECURITY", "CHECKPOINT", "DEALLOCATE", "VALUES", "TABLE"}
_CREATE_HARMLESS = {"VIEW", "MATERIALIZED", "FUNCTION", "PROCEDURE", "TRIGGER", "CONSTRAINT", "TYPE", "DOMAIN",
                    "EXTENSION", "SCHEMA", "SEQUENCE", "POLICY", "RULE", "ROLE", "USER", "GROUP", "AGGREGATE",
                    "OPERATOR", "COLLATION", "PUBLICATION", "SUBSCRIPTION", "STATISTICS", "EVENT", "CAST",
                    "TEXT", "FOREIGN", "SERVER", "CONVERSION", "LANGUAGE", "TRANSFORM", "ACCESS", "DATABASE",
                    "TABLESPACE", "PROCEDURAL", "TRUSTED", "DEFAULT"}
_DROP_BREAKING = {"VIEW", "MATERIALIZED", "FUNCTION", "PROCEDURE", "TYPE", "SCHEMA", "SEQUENCE", "DOMAIN",
                  "EXTENSION", "AGGREGATE", "DATABASE", "ROUTINE", "FOREIGN"}
_DROP_HARMLESS = {"TRIGGER", "POLICY", "RULE", "ROLE", "USER", "GROUP", "OWNED", "PUBLICATION", "SUBSCRIPTION",
                  "STATISTICS", "CAST", "EVENT", "OPERATOR", "COLLATION", "CONVERSION", "SERVER", "TABLESPACE",
                  "TEXT", "TRANSFORM", "LANGUAGE", "ACCESS"}
_ALTER_OBJECTS = {"SEQUENCE", "VIEW", "MATERIALIZED", "TYPE", "FUNCTION", "PROCEDURE", "ROUTINE", "DOMAIN",
                  "SCHEMA", "EXTENSION", "TRIGGER", "POLICY", "RULE", "ROLE", "USER", "GROUP", "DATABASE",
                  "DEFAULT", "AGGREGATE", "OPERATOR", "COLLATION", "PUBLICATION", "SUBSCRIPTION", "STATISTICS",
                  "EVENT", "FOREIGN", "SERVER", "TABLESPACE", "TEXT", "SYSTEM", "LARGE", "LANGUAGE", "CONVERSION"}
_UNPARSED_HINT = "write it as plain statements Conveyor can read, or run it inside the migration window"
_WINDOW = "run it inside the migration window"

# Statements that need the migration window, by first word (`_Rules._online` names the forms that do not).
_WINDOW_STATEMENTS = {
    "VACUUM": ("vacuum-full", "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes wait",
               "use plain VACUUM (or pg_repack), or run it inside the migration window"),
    "CLUSTER": ("cluster", "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock",
                "use pg_repack, or run it inside the migration window"),
    "REINDEX": ("reindex-blocking", "REINDEX without CONCURRENTLY blocks writes to the table while it rebuilds",
                "REINDEX CONCURRENTLY (PostgreSQL 12+)"),
    "REFRESH": ("refresh-materialized-view",
                "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view while it runs",
                "REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view)"),
    "LOCK": ("lock-table", "LOCK TABLE stops the running release's reads or writes",
             "remove it, or run it inside the migration window"),
    "COPY": ("copy", "COPY loads rows in bulk in one transaction", "load in batches, or inside the migration window"),
}


@dataclass(frozen=True)
class Postgres:
    """The PostgreSQL server the migrations run on, and its version if known."""

    version: tuple[int, ...] | None = None

    def has(self, feature: str) -> bool:
        """Whether this server has a feature (a current release is assumed when the version is unknown)."""
        return self.version is None or self.version >= FEATURES[feature]

    @property
    def label(self) -> str:
        """`PostgreSQL 16`, or `PostgreSQL (version not given: a current release assumed)`."""
        return server_label("PostgreSQL", self.version)


def unparsed(why: str) -> Issue:
    """The verdict on what cannot be read: needs the window, never silently safe."""
    return unparsed_issue(why, _UNPARSED_HINT)


def judge(statement: Statement, schema: Schema, server: Postgres) -> list[Issue]:
    """The issues of one statement; the schema is updated with what it creates or changes."""
    judgement = Judgement("pg", _UNPARSED_HINT)
    _Rules(statement, schema, server, judgement).judge()
    return judgement.issues


def volatile(expression: Any) -> bool:
    """Whether a default calls a function whose value changes row by row (so adding it rewrites the table)."""
    from sqlglot import exp

    if expression is None:
        return False
    for function in expression.find_all(exp.Func):
        if isinstance(function, exp.Cast):
            continue
        name = str(function.name if isinstance(function, exp.Anonymous) else function.sql_name()).lower()
        if name not in _NOT_VOLATILE and name.replace("_", "") not in _NOT_VOLATILE:
            return True
    return False


def _binary_coercible(old: ColumnType, new: ColumnType) -> bool:
    """Whether PostgreSQL changes the type without rewriting the table."""
    if old.family == new.family == "text" and old.name != "CHAR" and new.name != "CHAR":
        if new.length is None:
            return True                      # to text, or to varchar without a limit
        return old.length is not None and new.length >= old.length
    if old.family == new.family == "decimal":
        if new.precision is None:
            return True
        return old.precision is not None and new.precision >= old.precision and new.scale == old.scale
    return False


class _Rules(Rules[Postgres]):
    dml = ("INSERT", "UPDATE", "DELETE", "MERGE", "WITH")
    harmless = _HARMLESS
    window_statements = _WINDOW_STATEMENTS
    drop_breaking = _DROP_BREAKING
    drop_harmless = _DROP_HARMLESS
    insert_select_cost = ""
    update_cost = ", and bloats the table"

    @property
    def dialect(self) -> str:
        return "postgresql"

    def _online(self, verb: str) -> bool:
        if verb == "VACUUM":
            return "FULL" not in self.keywords
        if verb == "REINDEX":
            return "CONCURRENTLY" in self.keywords and self.server.has("reindex-concurrently")
        if verb == "REFRESH":
            return "CONCURRENTLY" in self.keywords
        return False

    def _other(self, verb: str) -> bool:
        if verb in ("DO", "CALL"):
            self.j.unparsed(f"{verb} runs procedural code Conveyor cannot judge")
            return True
        return False

    # -- whole statements -------------------------------------------------------------------------------

    def _create(self) -> None:
        w = self.words
        w.take("CREATE")
        w.take("OR", "REPLACE")
        unique = w.take("UNIQUE")
        if w.take("INDEX"):
            self._create_index(unique=unique)
            return
        while w.at_any("GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED"):
            kind = w.next()
            if kind is not None and kind.value in ("TEMP", "TEMPORARY"):
                return  # a temporary table lives and dies with the migration's session
        if w.take("TABLE"):
            self._create_table()
            return
        word = w.peek()
        if word is not None and word.value in _CREATE_HARMLESS:
            return
        self.j.unparsed(f"CREATE {word.value if word else ''} is not something Conveyor has a rule for")

    def _create_table(self) -> None:
        upper = self.keywords
        if ("AS" in upper and "SELECT" in upper) or ("PARTITION" in upper[:8] and "OF" in upper[:8]):
            return  # CREATE TABLE AS, CREATE TABLE ... PARTITION OF: new tables nothing uses yet
        self._remember_table()

    def _create_index(self, *, unique: bool) -> None:
        w = self.words
        concurrently = w.take("CONCURRENTLY")
        if not self._index_on():
            return
        table = self._table_name()
        if self._on_new_table(table):
            return
        if concurrently:
            note = (": if a duplicate exists or is written meanwhile, it fails and leaves an INVALID index to drop"
                    if unique else "")
            self.j.add("create-index-concurrently", "safe",
                       f"CREATE INDEX CONCURRENTLY lets reads and writes continue while it builds{note}")
            return
        self.j.add("create-index-blocking", "needs-window",
                   f"CREATE INDEX without CONCURRENTLY holds a SHARE lock on {table}: the running release's writes "
                   "wait until the index is built",
                   "CREATE INDEX CONCURRENTLY (outside a transaction block), or run it inside the migration window")

    def _drop(self) -> None:
        w = self.words
        w.take("DROP")
        kind = w.next()
        if kind is None or kind.kind != "word":
            self.j.unparsed("an incomplete DROP")
            return
        if kind.value == "TABLE":
            self._drop_tables()
        elif kind.value == "INDEX":
            if not w.take("CONCURRENTLY"):
                self.j.add("drop-index-blocking", "needs-window",
                           "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table: reads and "
                           "writes wait behind it", "DROP INDEX CONCURRENTLY (outside a transaction block)")
        else:
            self._drop_object(kind.value)

    def _table_name(self) -> str | None:
        # ONLY leaves out the tables that inherit from this one: the verdict is about this one either way.
        self.words.take("ONLY")
        return self.words.name()

    def _truncated(self, name: str | None) -> None:
        self.j.add("truncate", "breaking",
                   f"TRUNCATE {name} deletes every row the running release reads, under an ACCESS EXCLUSIVE lock",
                   "delete in a contract migration once no release needs the data")

    # -- ALTER ------------------------------------------------------------------------------------------

    def _alter(self) -> None:
        w = self.words
        w.take("ALTER")
        if w.take("TABLE"):
            self._alter_table()
            return
        if w.take("INDEX"):
            if "TABLESPACE" in w.keywords():
                self.j.add("rewrite-table", "needs-window", "SET TABLESPACE moves the index under an ACCESS "
                           "EXCLUSIVE lock", _WINDOW)
            return
        kind = w.peek()
        if kind is None or kind.value not in _ALTER_OBJECTS:
            self.j.unparsed(f"ALTER {kind.value if kind else ''} is not something Conveyor has a rule for")
            return
        upper = w.keywords()
        if kind.value == "TYPE" and "ADD" in upper and "VALUE" in upper:
            if self.server.has("enum-value-in-transaction"):
                self.j.add("add-enum-value", "safe", "adding a value to an enum type changes only the catalog")
            else:
                self.j.add("add-enum-value-before-12", "needs-window",
                           "before PostgreSQL 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block",
                           "run it alone, outside a transaction")
        elif "RENAME" in upper or ("SET" in upper and "SCHEMA" in upper and kind.value != "DEFAULT"):
            self.j.add("rename-object", "breaking",
                       f"renaming (or moving) this {kind.value.lower()}: the running release still uses the old name",
                       "create the new one beside the old and move the code first; remove the old one in a contract "
                       "migration")
        elif kind.value == "DOMAIN" and "ADD" in upper and "CONSTRAINT" in upper and "VALID" not in upper:
            self.j.add("alter-domain-constraint", "needs-window", "adding a constraint to a domain checks every "
                       "column of that domain under lock", "add it NOT VALID, then VALIDATE CONSTRAINT")

    def _alter_table(self) -> None:
        w = self.words
        w.take("IF", "EXISTS")
        table = self._table_name()
        if table is None:
            if w.at_any("ALL"):
                self.j.add("rewrite-table", "needs-window", "ALTER TABLE ALL IN TABLESPACE moves every table",
                           _WINDOW)
            else:
                self.j.unparsed("ALTER TABLE without a table name")
            return
        w.take("*")
        alter = _AlterTable(self, table)
        if w.take("RENAME"):
            alter.rename(w)
        elif w.take("SET", "SCHEMA"):
            alter.add("rename-table", "breaking", f"moving {table} to another schema: the running release still "
                      "finds it by its old name", "create a view in the old schema, or move it in a contract "
                      "migration")
        elif w.at_any("ATTACH", "DETACH"):
            alter.partition(w)
        else:
            for action in w.split(","):
                alter.action(action)
        alter.finish()


class _AlterTable(AlterTable[Postgres]):
    """One PostgreSQL ALTER TABLE: its actions judged one by one."""

    def rename(self, w: Words) -> None:
        if w.take("CONSTRAINT"):
            return
        if w.take("TO"):
            new = w.name()
            if new is None:
                self.j.unparsed("a RENAME Conveyor cannot read")
                return
            self.add("rename-table", "breaking", f"renaming {self.name} to {new}: the running release still uses "
                     "the old name", "create the new table (or a view) beside the old one and move the code first; "
                     "rename or drop in a contract migration")
            old = self.name
            self.j.updates.append(lambda: self.schema.rename(old, new))
            return
        w.take("COLUMN")
        names = renamed(w, self.j, "RENAME COLUMN")
        if names is None:
            return
        old_column, new_column = names
        self.add("rename-column", "breaking",
                 f"renaming column {old_column} to {new_column}: the running release still uses the old name",
                 "add the new column, write both from the code, backfill, move reads; drop the old one in a contract "
                 "migration")
        self._rename_later(old_column, new_column)

    def partition(self, w: Words) -> None:
        if w.take("ATTACH"):
            self.add("attach-partition", "needs-window", "ATTACH PARTITION scans the new partition to check its "
                     "bounds unless a matching CHECK constraint proves them", "add a CHECK constraint matching the "
                     "bounds (NOT VALID, then VALIDATE) first, or run it inside the migration window")
            return
        upper = w.keywords()
        if "CONCURRENTLY" in upper and self.server.has("detach-concurrently"):
            return
        self.add("detach-partition", "needs-window", "DETACH PARTITION takes an ACCESS EXCLUSIVE lock on the parent",
                 "DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+)")

    def action(self, a: Words) -> None:
        if a.take("ADD"):
            if a.at_any("CONSTRAINT", "CHECK", "UNIQUE", "PRIMARY", "FOREIGN", "EXCLUDE"):
                self._constraint(a)
            else:
                a.take("COLUMN")
                a.take("IF", "NOT", "EXISTS")
                self._add_column(a.rest())
        elif a.take("DROP"):
            if a.take("CONSTRAINT"):
                a.take("IF", "EXISTS")
                name = a.name()
                if name:
                    self.schema.not_null_checks.pop(name.lower(), None)
                return
            name = self._drop_column(a)
            if name is not None:
                self.add("drop-column", "breaking", f"DROP COLUMN {name}: the running release still reads and "
                         "writes it", "stop using the column in a release first (make it NULL-able or give it a "
                         "DEFAULT now); drop it in a contract migration")
        elif a.take("ALTER"):
            a.take("COLUMN")
            name = a.name()
            if name is None:
                self.j.unparsed("ALTER COLUMN without a column name")
                return
            self._alter_column(name, a)
        elif a.take("VALIDATE", "CONSTRAINT"):
            name = a.name()
            if name and name.lower() in self.schema.not_null_checks:
                checked = self.schema.not_null_checks[name.lower()]
                self.j.updates.append(lambda: self.schema.validated_not_null.add(checked))
        elif a.take("SET"):
            if a.at_any("TABLESPACE", "LOGGED", "UNLOGGED", "ACCESS"):
                what = a.next().value  # type: ignore[union-attr]
                self.add("rewrite-table", "needs-window", f"SET {what} rewrites the table under an ACCESS EXCLUSIVE "
                         "lock: reads and writes wait", _WINDOW)
            elif not a.at_any("WITHOUT", "SCHEMA") and not a.at("("):
                self.j.unparsed(f"the ALTER TABLE action {a.rest()[:40]!r}")
        elif a.at_any("ENABLE", "DISABLE", "FORCE", "NO", "CLUSTER", "OWNER", "REPLICA", "INHERIT", "OF", "NOT",
                      "RESET"):
            return
        else:
            self.j.unparsed(f"the ALTER TABLE action {a.rest()[:40]!r}")

    def _add_column(self, text: str) -> None:
        parsed = self._parse_column(text)
        if parsed is None:
            return
        column = parsed.column
        serial = column.type is not None and column.type.name in ("SERIAL", "BIGSERIAL", "SMALLSERIAL")
        if serial or parsed.identity:
            what = "a serial" if serial else "an identity"
            self.add("add-column-generated", "needs-window",
                     f"adding {what} column {column.name} fills it for every row: the table is rewritten under an "
                     "ACCESS EXCLUSIVE lock", "add a plain column, backfill it in batches, then attach the sequence; "
                     "or run it inside the migration window")
        elif column.generated:
            self.add("add-column-generated", "needs-window",
                     f"adding generated column {column.name} computes it for every row: the table is rewritten under "
                     "an ACCESS EXCLUSIVE lock", _WINDOW)
        elif column.has_default and volatile(parsed.default):
            self.add("add-column-volatile-default", "needs-window",
                     f"the default of {column.name} is volatile (computed per row): the table is rewritten under an "
                     "ACCESS EXCLUSIVE lock", "add the column without a default (or with a constant one), set the "
                     "default after, and backfill in batches")
        elif column.has_default and not self.server.has("fast-default"):
            self.add("add-column-default-rewrite", "needs-window",
                     f"before PostgreSQL 11, adding a column with a default rewrites the table ({self.server.label})",
                     "add it without a default, then SET DEFAULT and backfill in batches")
        elif column.not_null and not column.has_default:
            self.add("add-column-not-null-no-default", "breaking",
                     f"column {column.name} is NOT NULL without a DEFAULT: it cannot be added to a table with rows, "
                     "and the running release's INSERTs do not name it",
                     "give it a DEFAULT, or add it NULL-able now and SET NOT NULL in a contract migration")
        else:
            self.add("add-column", "safe", f"ADD COLUMN {column.name} changes only the catalog (no rewrite on "
                     f"{self.server.label})")
        if parsed.inline & {"primary key", "unique"}:
            self.add("add-unique-constraint", "needs-window", f"the inline UNIQUE/PRIMARY KEY of {column.name} builds "
                     "an index under an ACCESS EXCLUSIVE lock",
                     "add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX")
        if "references" in parsed.inline:
            self.add("add-foreign-key", "needs-window", f"the inline REFERENCES of {column.name} locks both tables "
                     "(SHARE ROW EXCLUSIVE) while it validates every row",
                     "add the column, then ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, and VALIDATE CONSTRAINT in a "
                     "later migration")
        if "check" in parsed.inline:
            self.add("add-check-constraint", "needs-window", f"the inline CHECK of {column.name} is validated against "
                     "every row under an ACCESS EXCLUSIVE lock",
                     "add the column, then ADD CONSTRAINT ... CHECK ... NOT VALID and VALIDATE CONSTRAINT")
        self._put_later(column)

    def _constraint(self, a: Words) -> None:
        name = None
        if a.take("CONSTRAINT"):
            name = a.name()
        upper = a.keywords()
        not_valid = upper[-2:] == ["NOT", "VALID"]
        if a.take("FOREIGN", "KEY"):
            if not_valid:
                self.add("add-constraint-not-valid", "safe", "a NOT VALID foreign key checks only new rows: it takes "
                         "its locks for a moment",
                         "VALIDATE CONSTRAINT in a later migration (it does not block writes)")
            else:
                self.add("add-foreign-key", "needs-window", "ADD FOREIGN KEY locks both tables (SHARE ROW EXCLUSIVE) "
                         "while it validates every row: writes wait", "ADD CONSTRAINT ... NOT VALID, then VALIDATE "
                         "CONSTRAINT in a later migration")
        elif a.take("CHECK"):
            check = a.text_from(a.i) if not a.done() else ""
            match = re.fullmatch(r"\(\s*\(?\s*\"?(\w+)\"?\s+IS\s+NOT\s+NULL\s*\)?\s*\)(\s+NOT\s+VALID)?", check.strip(),
                                 re.IGNORECASE)
            if match and name:
                checked = (self.name.lower(), match.group(1).lower())
                self.j.updates.append(lambda: self.schema.not_null_checks.__setitem__(name.lower(), checked))
            if not_valid:
                self.add("add-constraint-not-valid", "safe", "a NOT VALID check constraint checks only new rows",
                         "VALIDATE CONSTRAINT in a later migration (it does not block writes)")
            else:
                self.add("add-check-constraint", "needs-window", "ADD CHECK validates every row under an ACCESS "
                         "EXCLUSIVE lock: reads and writes wait", "ADD CONSTRAINT ... CHECK (...) NOT VALID, then "
                         "VALIDATE CONSTRAINT")
        elif a.take("UNIQUE") or a.take("PRIMARY", "KEY"):
            primary = "PRIMARY" in upper[:2]
            if a.at("USING", "INDEX"):
                self.add("add-constraint-using-index", "safe", "the constraint takes over an index built before: a "
                         "moment's lock" + (" (the columns must already be NOT NULL, or they are scanned)"
                                            if primary else ""))
            else:
                rule = "add-primary-key" if primary else "add-unique-constraint"
                self.add(rule, "needs-window", f"ADD {'PRIMARY KEY' if primary else 'UNIQUE'} builds its index under "
                         "an ACCESS EXCLUSIVE lock: reads and writes wait", "CREATE UNIQUE INDEX CONCURRENTLY first, "
                         f"then ADD CONSTRAINT ... {'PRIMARY KEY' if primary else 'UNIQUE'} USING INDEX")
        elif a.take("EXCLUDE"):
            self.add("add-exclusion-constraint", "needs-window", "ADD EXCLUDE builds its index under an ACCESS "
                     "EXCLUSIVE lock", _WINDOW)
        else:
            self.j.unparsed("a constraint Conveyor cannot read")

    def _alter_column(self, name: str, a: Words) -> None:
        existing = self.table.column(name) if self.table else None
        if a.take("SET", "DATA", "TYPE") or a.take("TYPE"):
            self._change_type(name, existing, a)
        elif a.take("SET", "DEFAULT"):
            self.add("set-default", "safe", f"setting the default of {name} changes only the catalog")
            self._set_later(existing, "has_default", True)
        elif a.take("DROP", "DEFAULT"):
            if existing is not None and existing.not_null:
                self.add("drop-default-not-null", "breaking", f"{name} is NOT NULL: without its default the running "
                         "release's INSERTs that leave it out fail", "drop the default in a contract migration, once "
                         "every release writes the column")
            else:
                self.add("set-default", "safe", f"dropping the default of {name} changes only the catalog")
            self._set_later(existing, "has_default", False)
        elif a.take("SET", "NOT", "NULL"):
            self._set_not_null(name, existing)
        elif a.take("DROP", "NOT", "NULL"):
            self.add("drop-not-null", "safe", f"making {name} NULL-able changes only the catalog (the running "
                     "release keeps writing values; check it copes with reading NULLs the new release may write)")
            self._set_later(existing, "not_null", False)
        elif a.at_any("ADD", "SET", "DROP", "RESTART", "OPTIONS"):
            return  # identity, statistics, storage, compression, expression: catalog changes
        else:
            self.j.unparsed(f"the ALTER COLUMN action {a.rest()[:40]!r}")

    def _set_not_null(self, name: str, existing: Column | None) -> None:
        checked = (self.name.lower(), name.lower()) in self.schema.validated_not_null
        if checked and self.server.has("not-null-from-check"):
            self.add("set-not-null-checked", "safe", f"a validated CHECK ({name} IS NOT NULL) proves the column has "
                     "no NULL: SET NOT NULL skips its scan", "drop the CHECK constraint afterwards")
        else:
            self.add("set-not-null", "needs-window",
                     "SET NOT NULL scans the whole table for NULLs under an ACCESS EXCLUSIVE lock: reads and writes "
                     "wait", f"ADD CONSTRAINT {name}_not_null CHECK ({name} IS NOT NULL) NOT VALID; VALIDATE it in "
                     "the next migration; then SET NOT NULL (PostgreSQL 12+ skips the scan) and drop the check")
        self._set_later(existing, "not_null", True)

    def _change_type(self, name: str, existing: Column | None, a: Words) -> None:
        start = a.i
        stop = None
        depth = 0
        for index in range(a.i, len(a.words)):
            word = a.words[index]
            if word.kind == "punct" and word.value in "()":
                depth += 1 if word.value == "(" else -1
            elif depth == 0 and word.kind == "word" and word.value in ("COLLATE", "USING"):
                stop = index
                break
        type_text = a.text_from(start, stop)
        using = stop is not None and a.words[stop].value == "USING"
        parsed = parse_column(f"_conveyor_column {type_text}", "postgresql")
        if parsed is None or parsed.column.type is None:
            self.j.unparsed("a type sqlglot cannot parse")
            return
        new_type = parsed.column.type
        if existing is None or existing.type is None:
            self.add("change-column-type", "needs-window",
                     f"the current type of {name} is not known from the earlier migrations: changing it to "
                     f"{new_type.sql} is assumed to rewrite the table under an ACCESS EXCLUSIVE lock",
                     UNKNOWN_COLUMN_HINT)
        else:
            old_type = existing.type
            relation = compare_types(old_type, new_type)
            if relation in ("narrow", "change"):
                self._narrowed(name, old_type, new_type, relation)
            if relation == "same":
                pass
            elif not using and _binary_coercible(old_type, new_type):
                self.add("widen-column-type", "safe", f"{old_type.sql} to {new_type.sql} is binary coercible: only "
                         "the catalog changes, no rewrite")
            else:
                self.add("change-column-type", "needs-window",
                         f"changing {name} from {old_type.sql} to {new_type.sql} rewrites the table and its indexes "
                         "under an ACCESS EXCLUSIVE lock: reads and writes wait", "add a new column, backfill in "
                         "batches and switch over; or run it inside the migration window")
        self._set_later(existing, "type", new_type)


__all__ = ["FEATURES", "Postgres", "judge", "unparsed", "volatile"]
