"""MySQL and MariaDB: one ALTER TABLE, read action by action (its comma-separated list), then as a whole."""

from __future__ import annotations

from typing import Protocol, cast

from conveyor.migrations.mysql_columns import ColumnChanges
from conveyor.migrations.mysql_server import COPY, INPLACE, INSTANT, KEEP_WRITING, LOCKED, WORDS, MySQLJudgement, Server
from conveyor.migrations.rules_common import Rules, renamed
from conveyor.migrations.statements import Words, lex


class StatementRules(Protocol):
    """What an ALTER TABLE asks of the rules that read its statement (rules_mysql.MySQLRules): the judgements it
    shares with CREATE INDEX and RENAME TABLE."""

    def _index(self, kind: str, table: str | None) -> None: ...

    def _drop_primary_key(self, *, replaced: bool) -> None: ...

    def _check_explicit(self, algorithm: str | None, lock: str | None) -> None: ...

    def _rename_table(self, old: str, new: str) -> None: ...


class Alter(ColumnChanges):
    """One ALTER TABLE: its actions judged one by one, then as a whole."""

    j: MySQLJudgement

    def __init__(self, rules: Rules[Server], table: str) -> None:
        super().__init__(rules, table)
        self.statement_rules = cast(StatementRules, rules)
        self.algorithm: str | None = None
        self.lock: str | None = None
        self.drops_primary_key = False
        self.adds_primary_key = False


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
            self.statement_rules._index("index", self.name)
            return
        if a.at_any("FULLTEXT", "SPATIAL"):
            kind = a.next().value.lower()  # type: ignore[union-attr]
            self.statement_rules._index(kind, self.name)
            return
        if a.take("CONSTRAINT") and not a.at_any("PRIMARY", "UNIQUE", "FOREIGN", "CHECK"):
            a.next()  # the constraint's name
        if a.take("PRIMARY", "KEY"):
            self.adds_primary_key = True
            self.statement_rules._index("primary", self.name)
        elif a.take("UNIQUE"):
            self.statement_rules._index("unique", self.name)
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
                     f"adding VIRTUAL column {column.name} changes only metadata ({WORDS[algorithm]}) on "
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
                         f"ADD COLUMN {column.name} {how} ({WORDS[algorithm]} on {self.server.label})",
                         algorithm=algorithm)
        if "primary key" in parsed.inline:
            self.adds_primary_key = True
            self.statement_rules._index("primary", self.name)
        if "unique" in parsed.inline:
            self.statement_rules._index("unique", self.name)
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
                     f"with foreign_key_checks=0 the foreign key is added in place ({WORDS[INPLACE]}) without "
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
            self.add("drop-index", "safe", f"DROP INDEX runs in place ({WORDS[INPLACE]}): {KEEP_WRITING}",
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
            self.add("rename-index", "safe", f"RENAME INDEX changes only metadata, in place ({WORDS[INPLACE]})",
                     algorithm=INPLACE)
            return
        if not a.take("TO"):
            a.take("AS")
        new_name = a.name()
        if new_name is None:
            self.j.unparsed("a RENAME Conveyor cannot read")
            return
        self.statement_rules._rename_table(self.name, new_name)

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
                     f"({WORDS[algorithm]})", algorithm=algorithm)
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


    # -- the statement as a whole -----------------------------------------------------------------------

    def finish(self) -> None:
        if not self.server.has("online-ddl"):
            self.add("no-online-ddl", "needs-window",
                     f"{self.server.label} has no online DDL: ALTER TABLE copies the table and writes wait",
                     "run it inside the migration window", COPY)
        if self.drops_primary_key:
            self.statement_rules._drop_primary_key(replaced=self.adds_primary_key)
        super().finish()
        self.statement_rules._check_explicit(self.algorithm, self.lock)


__all__ = ["Alter"]
