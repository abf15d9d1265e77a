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

from conveyor.migrations.findings import Issue
from conveyor.migrations.pg_alter import PgAlterTable, volatile
from conveyor.migrations.pg_server import FEATURES, UNPARSED_HINT, WINDOW, Postgres, unparsed
from conveyor.migrations.rules_common import Judgement, Rules
from conveyor.migrations.sqlschema import Schema
from conveyor.migrations.statements import Statement

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





def judge(statement: Statement, schema: Schema, server: Postgres) -> list[Issue]:
    """The issues of one statement; the schema is updated with what it creates or changes."""
    judgement = Judgement("pg", UNPARSED_HINT)
    PgRules(statement, schema, server, judgement).judge()
    return judgement.issues



class PgRules(Rules[Postgres]):
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

    def run(self) -> None:
        head = self.words.peek()
        verb = head.value if head is not None and head.kind == "word" else ""
        if verb in ("BEGIN", "START"):
            self.j.updates.append(self._begin)
        elif verb in ("COMMIT", "END", "ROLLBACK", "ABORT") and "TO" not in self.keywords:
            self.j.updates.append(self._end)
        elif self.schema.in_transaction and self._outside_transactions_only(verb):
            self.j.add("concurrently-in-transaction", "needs-window",
                       f"{' '.join(self.keywords[:4])} cannot run inside a transaction block, and this file runs in "
                       "one (migrations.transaction: per-file, or an explicit BEGIN): the migration fails",
                       "move it to a file of its own whose first lines say `-- conveyor: no-transaction`, and have "
                       "the runner apply that file outside a transaction (Django: atomic = False; Rails: "
                       "disable_ddl_transaction!); or set migrations.transaction: none if your runner never wraps a "
                       "file")
            return
        super().run()

    def _outside_transactions_only(self, verb: str) -> bool:
        """Whether PostgreSQL refuses this statement inside a transaction block."""
        if verb == "VACUUM":
            return True
        if "CONCURRENTLY" not in self.keywords or verb == "REFRESH":
            return False
        return verb in ("CREATE", "DROP", "REINDEX") or (verb == "ALTER" and "DETACH" in self.keywords)

    def _begin(self) -> None:
        self.schema.in_transaction = True
        self.schema.not_valid_in_transaction.clear()

    def _end(self) -> None:
        self.schema.in_transaction = False
        self.schema.not_valid_in_transaction.clear()

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
                           "EXCLUSIVE lock", WINDOW)
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
                           WINDOW)
            else:
                self.j.unparsed("ALTER TABLE without a table name")
            return
        w.take("*")
        alter = PgAlterTable(self, table)
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




__all__ = ["FEATURES", "PgRules", "Postgres", "judge", "unparsed", "volatile"]
