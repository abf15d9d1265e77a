"""PostgreSQL: one ALTER TABLE, read action by action: each action's lock, rewrite or scan, and what it means
for the release still running."""

from __future__ import annotations

import re
from typing import Any

from conveyor.migrations.pg_server import WINDOW, Postgres
from conveyor.migrations.rules_common import UNKNOWN_COLUMN_HINT, AlterTable, Rules, renamed
from conveyor.migrations.sqlschema import Column, ColumnType, parse_column
from conveyor.migrations.statements import Words
from conveyor.migrations.typechange import compare_types

# Functions whose value does not change row by row: a default calling only these needs no rewrite (11+).
_NOT_VOLATILE = {"now", "current_timestamp", "current_date", "current_time", "localtime", "localtimestamp",
                 "transaction_timestamp", "statement_timestamp", "current_user", "session_user", "user",
                 "current_schema", "current_role", "lower", "upper", "coalesce", "concat", "nullif", "greatest",
                 "least", "abs", "round", "array", "to_jsonb", "to_json", "jsonb_build_object", "json_build_object",
                 "jsonb_build_array", "json_build_array", "make_interval", "interval", "date_trunc", "cast",
                 "trycast", "timestamp", "currenttimestamp", "currentdate", "currenttime"}



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


def binary_coercible(old: ColumnType, new: ColumnType) -> bool:
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



class PgAlterTable(AlterTable[Postgres]):
    """One PostgreSQL ALTER TABLE: its actions judged one by one."""

    def __init__(self, rules: Rules[Postgres], table: str) -> None:
        super().__init__(rules, table)
        self.added: dict[str, Column] = {}   # columns this statement adds, by lower-cased name
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
            if name and self.schema.in_transaction and name.lower() in self.schema.not_valid_in_transaction:
                self.add("validate-in-transaction", "needs-window",
                         f"{name} was added NOT VALID in the same transaction (the runner wraps the file in one): its "
                         "lock is still held, so VALIDATE scans every row while writes (and, for a CHECK, reads) wait",
                         "VALIDATE CONSTRAINT in a later migration (its own transaction), or set "
                         "migrations.transaction: none if your runner does not wrap each file in a transaction")
            if name and name.lower() in self.schema.not_null_checks:
                checked = self.schema.not_null_checks[name.lower()]
                self.j.updates.append(lambda: self.schema.validated_not_null.add(checked))
        elif a.take("SET"):
            if a.at_any("TABLESPACE", "LOGGED", "UNLOGGED", "ACCESS"):
                what = a.next().value  # type: ignore[union-attr]
                self.add("rewrite-table", "needs-window", f"SET {what} rewrites the table under an ACCESS EXCLUSIVE "
                         "lock: reads and writes wait", WINDOW)
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
                     "an ACCESS EXCLUSIVE lock", WINDOW)
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
        if "references" in parsed.inline and not column.has_default:
            self.add("add-column-foreign-key", "safe", f"the new column {column.name} holds NULL in every row: its "
                     "REFERENCES has nothing to validate, and locks both tables only for a moment")
        elif "references" in parsed.inline:
            self.add("add-foreign-key", "needs-window", f"the inline REFERENCES of {column.name} locks both tables "
                     "(SHARE ROW EXCLUSIVE) while it validates every row",
                     "add the column, then ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, and VALIDATE CONSTRAINT in a "
                     "later migration")
        self.added[column.name.lower()] = column
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
        if not_valid and name:
            self.j.updates.append(lambda: self.schema.not_valid_in_transaction.add(name.lower()))
        if a.take("FOREIGN", "KEY"):
            if not_valid:
                self.add("add-constraint-not-valid", "safe", "a NOT VALID foreign key checks only new rows: it takes "
                         "its locks (SHARE ROW EXCLUSIVE on both tables) for a moment",
                         "VALIDATE CONSTRAINT in a later transaction (it does not block writes)")
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
            how = ("NOT VALID, it checks only new rows, under a moment's ACCESS EXCLUSIVE lock" if not_valid else
                   "validates every row under an ACCESS EXCLUSIVE lock (reads and writes wait)")
            self.add("add-check-constraint", "breaking",
                     f"ADD CHECK: the running release's writes that the check refuses fail (a contract change, like "
                     f"SET NOT NULL); {how}", "add it in a contract migration, once every release writes only rows "
                     "that pass it" + ("" if not_valid else "; NOT VALID, then VALIDATE CONSTRAINT in a later "
                                       "transaction, keeps the lock short"))
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
                     "EXCLUSIVE lock", WINDOW)
        else:
            self.j.unparsed("a constraint Conveyor cannot read")

    def _alter_column(self, name: str, a: Words) -> None:
        existing = (self.table.column(name) if self.table else None) or self.added.get(name.lower())
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
        elif existing is not None and existing.not_null:
            self.add("set-not-null-already", "safe", f"{name} is NOT NULL already: nothing changes")
        else:
            self.add("set-not-null", "breaking",
                     f"SET NOT NULL on {name}: the running release's writes of NULL to it fail; it also scans the "
                     "whole table under an ACCESS EXCLUSIVE lock (reads and writes wait)",
                     "a contract migration, once every release writes a value: backfill, then ADD CONSTRAINT "
                     f"{name}_not_null CHECK ({name} IS NOT NULL) NOT VALID, VALIDATE it in a later transaction, SET "
                     "NOT NULL (12+ skips the scan) and drop the check")
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
            elif not using and binary_coercible(old_type, new_type):
                self.add("widen-column-type", "safe", f"{old_type.sql} to {new_type.sql} is binary coercible: only "
                         "the catalog changes, no rewrite")
            else:
                self.add("change-column-type", "needs-window",
                         f"changing {name} from {old_type.sql} to {new_type.sql} rewrites the table and its indexes "
                         "under an ACCESS EXCLUSIVE lock: reads and writes wait", "add a new column, backfill in "
                         "batches and switch over; or run it inside the migration window")
        self._set_later(existing, "type", new_type)



__all__ = ["PgAlterTable", "binary_coercible", "volatile"]
