"""MySQL and MariaDB: one ALTER TABLE, read action by action (its comma-separated list), then as a whole."""

from __future__ import annotations

from typing import Protocol, cast

from conveyor.migrations.createtable import key_of
from conveyor.migrations.mysql_columns import ColumnChanges
from conveyor.migrations.mysql_server import (
    COPY,
    INPLACE,
    INSTANT,
    LOCKED,
    WORDS,
    MySQLJudgement,
    Server,
    per_row,
    rebuild,
)
from conveyor.migrations.rules_common import Rules, renamed
from conveyor.migrations.sqlschema import Column, Index, canonical_charset
from conveyor.migrations.statements import Words, lex


class StatementRules(Protocol):
    """What an ALTER TABLE asks of the rules that read its statement (rules_mysql.MySQLRules): the judgements it
    shares with CREATE INDEX and RENAME TABLE."""

    def _index(self, kind: str, table: str | None, index: Index | None = None) -> None: ...

    def _primary_key(self, table_name: str, index: Index, *, replacing: bool) -> None: ...

    def _drop_index(self, table_name: str | None, name: str) -> None: ...

    def _drop_primary_key(self, *, replaced: bool, table_name: str | None = None) -> None: ...

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
        self.new_primary_key: Index | None = None
        self.added: dict[str, Column] = {}          # columns this statement adds, by lower-cased name
        self.virtual_added: list[str] = []           # ... of them VIRTUAL


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
        key = key_of(Words(a.remaining(), a.source))
        if key is not None and key.kind == "primary":
            self.new_primary_key = key   # judged once the whole statement is read: it may drop the old one
            return
        if key is not None and key.kind != "foreign":
            self.statement_rules._index(key.kind, self.name, key)
            return
        if a.take("CONSTRAINT") and not a.at_any("PRIMARY", "UNIQUE", "FOREIGN", "CHECK"):
            a.next()  # the constraint's name
        if a.take("FOREIGN", "KEY"):
            self._add_foreign_key()
        elif a.take("CHECK"):
            self.add("add-check-constraint", "breaking",
                     "ADD CHECK: the running release's writes that the check refuses fail (a contract change, like "
                     "NOT NULL); it also reads every row, copying the table (ALGORITHM=COPY) while writes wait",
                     "add it in a contract migration, once every release writes only rows that pass it", COPY)
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
            self.virtual_added.append(column.name.lower())
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
            elif column.has_default and per_row(parsed.default):
                self.add("add-column-volatile-default", "needs-window",
                         f"the DEFAULT of {column.name} is computed row by row (it calls a function like UUID() or "
                         "RAND(), or reads another column): the server copies the table (ALGORITHM=COPY) to fill it "
                         "while writes wait", "add the column without that default (or with a constant), backfill "
                         "it in batches, then set the default; or run it inside the migration window", COPY)
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
            self.new_primary_key = Index("PRIMARY", (column.name.lower(),), "primary")
        if "unique" in parsed.inline:
            self.statement_rules._index("unique", self.name, Index(column.name, (column.name.lower(),), "unique"))
        self.added[column.name.lower()] = column
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
        elif a.take("INDEX") or a.take("KEY"):
            a.take("IF", "EXISTS")
            name = a.name()
            if name is None:
                self.j.unparsed("DROP INDEX without a name")
            else:
                self.statement_rules._drop_index(self.name, name)
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
        if a.take("INDEX") or a.take("KEY"):
            self.add("rename-index", "safe", f"RENAME INDEX changes only metadata, in place ({WORDS[INPLACE]})",
                     algorithm=INPLACE)
            names = renamed(a, self.j, "RENAME INDEX")
            table = self.table
            if names is not None and table is not None:
                def follow(old: str = names[0], new: str = names[1]) -> None:
                    index = table.drop_index(old)
                    if index is not None:
                        table.add_index(Index(new, index.columns, index.kind))
                self.j.updates.append(follow)
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
        existing = (self.table.column(name) if self.table else None) or self.added.get(name.lower())
        algorithm = INSTANT if self.server.has("instant-default") else INPLACE
        if a.take("SET", "DEFAULT"):
            self.add("set-default", "safe", f"setting the default of {name} changes only metadata "
                     f"({WORDS[algorithm]})", algorithm=algorithm)
            self._set_later(existing, "has_default", True)
        elif a.take("DROP", "DEFAULT"):
            if existing is not None and existing.not_null and existing.type is not None \
                    and existing.type.family == "enum":
                self.add("set-default", "safe", f"{name} is an ENUM: without a DEFAULT the server fills in its first "
                         "member, so INSERTs that leave it out still work", algorithm=algorithm)
            elif existing is not None and existing.not_null:
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
        name = canonical_charset(charset.name) if charset is not None else None
        algorithm, why = self._convert_algorithm(name)
        if algorithm == COPY:
            self.add("convert-charset", "needs-window",
                     f"CONVERT TO CHARACTER SET re-encodes every string column, copying the table (ALGORITHM=COPY): "
                     f"writes wait ({why})",
                     "run it inside the migration window (or with an online schema change tool)", COPY)
        else:
            self.add("convert-charset-online", "safe", f"CONVERT TO CHARACTER SET {why}: "
                     f"{'metadata only' if algorithm == INSTANT else 'indexes rebuilt in place'} ({WORDS[algorithm]} "
                     f"on {self.server.label})", algorithm=algorithm)
        table = self.table
        if table is not None and name is not None:
            def follow() -> None:
                table.charset = name
                for column in table.columns.values():
                    if column.type is not None and column.type.family in ("text", "enum", "set"):
                        column.charset, column.collation = name, None
            self.j.updates.append(follow)

    def _convert_algorithm(self, new: str | None) -> tuple[str, str]:
        """How the server converts the table's string columns to `new`, and why."""
        table = self.table
        if table is None or new is None or not table.keys_known:
            return COPY, "the table's columns and indexes are not known from the earlier migrations"
        strings = [c for c in table.columns.values() if c.type is not None and c.type.family in ("text", "enum", "set")]
        old = {canonical_charset(c.charset or table.charset) for c in strings} or {canonical_charset(table.charset)}
        indexed = any(table.indexed(c.name) for c in strings)
        if None in old or not self.server.has("instant-charset"):
            return COPY, "every string is re-encoded"
        if table.fulltext:
            return COPY, "the table has a FULLTEXT index"
        if old == {new}:
            if not indexed:
                return INSTANT, "changes only the collation, and no index covers a string column"
            if any(c.type is not None and c.type.family in ("enum", "set") for c in strings):
                return COPY, "the collation of an ENUM or SET column changes which member a value is"
            if self.server.has("inplace-indexed-collation"):
                return INPLACE, "changes only the collation; the indexes on string columns are rebuilt"
            return COPY, "the collation of an indexed column changes"
        texts = any(c.type is not None and c.type.name in ("TINYTEXT", "TEXT", "MEDIUMTEXT") for c in strings)
        if new == "utf8mb4" and old <= {"utf8mb3", "utf8mb4"} and not indexed and not texts:
            return INSTANT, "from utf8mb3 to utf8mb4 keeps every stored byte, and no index covers a string column"
        return COPY, f"from {', '.join(sorted(c for c in old if c))} to {new}"

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
                if engine is not None and engine.name.lower() == "innodb":
                    self.add(*rebuild(self.table, "ENGINE=InnoDB"))
                else:
                    self.add("rebuild-table", "needs-window", "ENGINE= moves the table to another storage engine, "
                             "copying it: writes wait", "run it inside the migration window", COPY)
            elif a.at_any("ROW_FORMAT", "KEY_BLOCK_SIZE", "FORCE"):
                option = a.next().value  # type: ignore[union-attr]
                if option != "FORCE":
                    a.take("=")
                    a.next()
                self.add(*rebuild(self.table, option))
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
                if self.table is not None and self.table.clustered_on() is not None:
                    self.add("order-by", "safe", "InnoDB keeps rows in the order of the primary key (or the UNIQUE "
                             "index it stores them by) and ignores ORDER BY: nothing changes", algorithm=INSTANT)
                else:
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
        if self.new_primary_key is not None:
            self.statement_rules._primary_key(self.name, self.new_primary_key, replacing=self.drops_primary_key)
        elif self.drops_primary_key:
            self.statement_rules._drop_primary_key(replaced=False, table_name=self.name)
        if self.virtual_added:
            others = [algorithm for issue, algorithm in zip(self.j.issues[self.first_issue:],
                                                             self.j.algorithms[self.first_issue:], strict=False)
                      if issue.rule != "mysql.add-virtual-column" and algorithm not in (None, INSTANT)]
            if others:
                self.add("add-virtual-column-combined", "needs-window",
                         f"adding VIRTUAL column {', '.join(self.virtual_added)} together with a change that is not "
                         "instant (an index on it, for one) cannot run in place with writes continuing: the server "
                         "copies the table or blocks writes", "add the VIRTUAL column alone first (instant), then the "
                         "index or other change in its own ALTER TABLE (in place, writes continue)", COPY)
        super().finish()
        self.statement_rules._check_explicit(self.algorithm, self.lock)


__all__ = ["Alter"]
