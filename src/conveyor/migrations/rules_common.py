"""What the MySQL/MariaDB and PostgreSQL rule sets share.

Both read a statement the same way: a verdict accumulated in a `Judgement`, a walker (`Rules`) that
dispatches on the statement's first word, and an `AlterTable` that judges ALTER TABLE action by action. What
a statement *means* differs by dialect (locks, algorithms, the words of the messages): each dialect's
module subclasses these and fills that in. What does not differ (a table this same migration created, a
DROP TABLE, an unbounded UPDATE, the schema history the rules keep up to date) is written once, here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from conveyor.migrations.createtable import parse_create, table_from_create
from conveyor.migrations.findings import Cls, Issue
from conveyor.migrations.sqlschema import (
    Column,
    ColumnType,
    ParsedColumn,
    Schema,
    is_command,
    parse_column,
    parse_statement,
    selects_a_whole_table,
)
from conveyor.migrations.statements import Statement, Words, lex

ServerT = TypeVar("ServerT")

UNKNOWN_COLUMN_HINT = ("lint with --database URL (the live schema), keep the migration that created the column in "
                       "the linted directory, or run it inside the migration window")
_BATCH_HINT = "backfill in batches (WHERE id BETWEEN ...), or run it inside the migration window"


def unparsed_issue(why: str, hint: str) -> Issue:
    """The verdict on what cannot be read: needs the window, never silently safe."""
    return Issue("unparsed", "needs-window",
                 f"Conveyor cannot read this statement ({why}), so it cannot tell that it is online and "
                 "compatible", hint)


def server_label(name: str, version: tuple[int, ...] | None) -> str:
    """`MariaDB 10.11.6`, or `PostgreSQL (version not given: a current release assumed)`."""
    if version is None:
        return f"{name} (version not given: a current release assumed)"
    return f"{name} {'.'.join(str(p) for p in version)}"


@dataclass
class Judgement:
    """What the rules say about one statement, and what it changes in the schema history.

    The changes (`updates`) are applied only once every rule has read the statement, so that each rule
    sees the schema as it was before the statement.
    """

    prefix: str             # of the rule ids: mysql | pg
    unparsed_hint: str      # what to do about a statement Conveyor cannot read, in this dialect
    issues: list[Issue] = field(default_factory=list)
    updates: list[Callable[[], object]] = field(default_factory=list)

    def add(self, rule: str, cls: Cls, message: str, hint: str = "") -> None:
        self.issues.append(Issue(f"{self.prefix}.{rule}", cls, message, hint))

    def unparsed(self, why: str) -> None:
        self.issues.append(unparsed_issue(why, self.unparsed_hint))

    def new_table(self, table: str) -> None:
        """The verdict on a change to a table the same migration created."""
        self.add("new-table", "safe",
                 f"{table} is created by this same migration: the running release does not use it yet")


def renamed(words: Words, judgement: Judgement, what: str) -> tuple[str, str] | None:
    """The two names of `old TO new` in a RENAME; None (and unparsed) unless both are there."""
    old = words.name()
    words.take("TO")
    new = words.name()
    if not old or not new:
        judgement.unparsed(f"a {what} Conveyor cannot read")
        return None
    return old, new


class Rules(ABC, Generic[ServerT]):
    """One statement read word by word and judged. Each dialect says which statements it knows and what
    they do to a running database; the statements both know alike are judged here."""

    # First words of the statements that change rows, and of those that change nothing a running release
    # depends on.
    dml: ClassVar[Collection[str]]
    harmless: ClassVar[Collection[str]]
    # Statements that need the migration window (unless `_online` says this one does not), by first word:
    # their rule, message and hint.
    window_statements: ClassVar[Mapping[str, tuple[str, str, str]]]
    # DROP of objects other than tables and indexes: those the running release may use, and those it does
    # not depend on.
    drop_breaking: ClassVar[Collection[str]]
    drop_harmless: ClassVar[Collection[str]]
    # What an INSERT ... SELECT, UPDATE or DELETE over a whole table costs, in this dialect's words: appended
    # to the messages the two dialects share.
    insert_select_cost: ClassVar[str]
    update_cost: ClassVar[str]
    update_hint: ClassVar[str] = _BATCH_HINT

    def __init__(self, statement: Statement, schema: Schema, server: ServerT, judgement: Judgement) -> None:
        self.statement = statement
        self.schema = schema
        self.server = server
        self.j = judgement
        # After `server`: MySQL's dialect is the server's flavor (mysql or mariadb).
        self.words = Words(lex(statement.text, self.dialect), statement.text)
        # The statement's keywords, upper-cased (names, strings and numbers left out).
        self.keywords = [w.value for w in self.words.words if w.kind == "word"]

    @property
    @abstractmethod
    def dialect(self) -> str:
        """The dialect the statement is lexed and parsed in."""

    def judge(self) -> None:
        """Judge the statement, then apply what it changes to the schema history."""
        if self.statement.problem:
            self.j.unparsed(self.statement.problem)
            return
        self.run()
        for update in self.j.updates:
            update()

    # -- dispatch ---------------------------------------------------------------------------------------

    def run(self) -> None:
        head = self.words.peek()
        if head is None:
            return
        if head.kind != "word":
            self.j.unparsed("it does not start with a keyword")
            return
        verb = head.value
        if verb == "ALTER":
            self._alter()
        elif verb == "CREATE":
            self._create()
        elif verb == "DROP":
            self._drop()
        elif verb == "TRUNCATE":
            self._truncate()
        elif verb in self.dml:
            self._dml()
        elif verb in self.window_statements:
            if not self._online(verb):
                rule, message, hint = self.window_statements[verb]
                self.j.add(rule, "needs-window", message, hint)
        elif verb in self.harmless:
            return
        elif not self._other(verb):
            tree = parse_statement(self.statement.text, self.dialect)
            if tree is None or is_command(tree):
                self.j.unparsed(f"{verb} is not a statement sqlglot can parse")
            else:
                self.j.unparsed(f"Conveyor has no rule for {verb} statements")

    @abstractmethod
    def _alter(self) -> None: ...

    @abstractmethod
    def _create(self) -> None: ...

    @abstractmethod
    def _drop(self) -> None: ...

    @abstractmethod
    def _truncated(self, table: str | None) -> None:
        """The verdict on a TRUNCATE of a table the running release uses."""

    def _online(self, verb: str) -> bool:
        """Whether this form of one of the `window_statements` runs online after all."""
        return False

    def _other(self, verb: str) -> bool:
        """Judge a statement only this dialect has a rule for; False when it has none for `verb`."""
        return False

    # -- what both dialects judge alike -----------------------------------------------------------------

    def _table_name(self) -> str | None:
        """The name of the table the statement works on, which comes next."""
        return self.words.name()

    def _on_new_table(self, table: str | None) -> bool:
        """Whether the statement changes a table this same migration created; if so, that is its verdict."""
        if not self.schema.is_new(table):
            return False
        self.j.new_table(table or "?")
        return True

    def _truncate(self) -> None:
        """TRUNCATE [TABLE] name: safe on a table this same migration created; else the dialect's verdict."""
        w = self.words
        w.take("TRUNCATE")
        w.take("TABLE")
        name = self._table_name()
        if not self._on_new_table(name):
            self._truncated(name)

    def _dml(self) -> None:
        from sqlglot import exp

        tree = parse_statement(self.statement.text, self.dialect)
        if tree is None or is_command(tree):
            self.j.unparsed("sqlglot cannot parse it")
            return
        target = tree.find(exp.Table)
        name = target.name if target is not None else None
        if self.schema.is_new(name):
            return
        what = type(tree).__name__.upper()
        if isinstance(tree, exp.Insert):
            if selects_a_whole_table(tree.args.get("expression")):
                self.j.add("unbounded-dml", "needs-window",
                           f"INSERT ... SELECT without WHERE copies a whole table into {name} in one transaction"
                           f"{self.insert_select_cost}", _BATCH_HINT)
        elif isinstance(tree, exp.Delete) and not self._bounded(tree):
            self.j.add("delete-all-rows", "breaking",
                       f"DELETE without WHERE removes every row of {name} the running release reads (and locks them "
                       f"all{self.update_cost})", "delete in a contract migration once no release needs the rows, in "
                       "batches (WHERE id BETWEEN ...)")
        elif isinstance(tree, exp.Update | exp.Delete):
            if not self._bounded(tree):
                self.j.add("unbounded-dml", "needs-window",
                           f"{what} without WHERE touches every row of {name} in one transaction: it locks them "
                           f"all{self.update_cost}", self.update_hint)
        elif not isinstance(tree, exp.Select):
            self.j.unparsed(f"Conveyor has no rule for {what}")

    def _bounded(self, tree: Any) -> bool:
        """Whether an UPDATE or DELETE touches only some rows."""
        return bool(tree.args.get("where"))

    def _remember_table(self, *, temporary: bool = False) -> None:
        """A CREATE TABLE parsed whole: the table it makes joins the schema history (a temporary table does
        not: it lives and dies with the migration's session)."""
        text = self.statement.text
        tree = parse_create(text, self.dialect)
        if tree is None:
            self.j.unparsed("sqlglot cannot parse this CREATE TABLE")
            return
        table = table_from_create(tree, self.dialect, text)
        if table is None or temporary:
            return
        if "EXISTS" in self.keywords[:6] and self.schema.table(table.name) is not None:
            return  # CREATE TABLE IF NOT EXISTS of a table that exists: nothing changes
        self.j.updates.append(lambda: self.schema.create(table))

    def _index_on(self) -> bool:
        """Step to the table a CREATE INDEX names, past ON; False (and unparsed) when there is no ON."""
        w = self.words
        while not w.done() and not w.at("ON"):
            w.next()
        if not w.take("ON"):
            self.j.unparsed("CREATE INDEX without ON table")
            return False
        return True

    def _drop_tables(self, *, temporary: bool = False) -> None:
        """DROP TABLE [IF EXISTS] a, b: breaking unless this same migration created them."""
        w = self.words
        w.take("IF", "EXISTS")
        names = [n for part in w.split(",") if (n := part.name())]
        if temporary:
            return
        for name in names:
            if not self._on_new_table(name):
                self.j.add("drop-table", "breaking",
                           f"DROP TABLE {name}: the running release still reads and writes it",
                           "stop using the table in a release first; drop it in a contract migration")
            self.j.updates.append(lambda name=name: self.schema.drop(name))  # type: ignore[misc]

    def _drop_object(self, kind: str) -> None:
        """DROP of an object other than a table or an index."""
        if kind in self.drop_breaking:
            self.j.add("drop-object", "breaking", f"DROP {kind}: the running release may still use it",
                       "stop using it in a release first; drop it in a contract migration")
        elif kind not in self.drop_harmless:
            self.j.unparsed(f"DROP {kind} is not something Conveyor has a rule for")


class AlterTable(Generic[ServerT]):
    """One ALTER TABLE: its actions judged one by one (each dialect reads its own), then as a whole."""

    def __init__(self, rules: Rules[ServerT], table: str) -> None:
        self.rules = rules
        self.j = rules.j
        self.schema = rules.schema
        self.server = rules.server
        self.name = table
        self.table = rules.schema.table(table)
        self.first_issue = len(self.j.issues)

    def add(self, rule: str, cls: Cls, message: str, hint: str = "") -> None:
        self.j.add(rule, cls, message, hint)

    def finish(self) -> None:
        if self.schema.is_new(self.name):
            # Nothing uses a table this same migration created: only what cannot be read still matters.
            kept = [i for i in self.j.issues[self.first_issue:] if i.rule == "unparsed"]
            del self.j.issues[self.first_issue:]
            self.j.issues.extend(kept)
            self.j.new_table(self.name)

    # -- helpers for the dialects' actions --------------------------------------------------------------

    def _parse_column(self, text: str) -> ParsedColumn | None:
        """A column definition parsed by sqlglot; None (and unparsed) when it cannot be."""
        parsed = parse_column(text, self.rules.dialect)
        if parsed is None:
            self.j.unparsed("a column definition sqlglot cannot parse")
        return parsed

    def _drop_column(self, a: Words) -> str | None:
        """The column a DROP [COLUMN] [IF EXISTS] action names, forgotten by the schema history once the
        statement is judged; None (and unparsed) when it names none."""
        a.take("COLUMN")
        a.take("IF", "EXISTS")
        name = a.name()
        if name is None:
            self.j.unparsed("DROP of something Conveyor cannot read")
            return None
        table = self.table
        if table is not None:
            def forget() -> None:
                table.columns.pop(name.lower(), None)
            self.j.updates.append(forget)
        return name

    def _narrowed(self, name: str, old_type: ColumnType, new_type: ColumnType, relation: str) -> None:
        """A type change that narrows (or changes the kind of) a column's values: breaking."""
        what = "narrows" if relation == "narrow" else "changes the kind of"
        self.add("narrow-column-type", "breaking",
                 f"{old_type.sql} to {new_type.sql} {what} the values of {name}: the running release may "
                 "write values that no longer fit, or read values it does not expect",
                 "add a new column of the new type, write both, backfill, switch reads; drop the old one in a "
                 "contract migration")

    def _put_later(self, column: Column) -> None:
        """Add (or replace) a column in the schema history once the statement is judged."""
        table = self.table
        if table is not None:
            self.j.updates.append(lambda: table.put(column))

    def _set_later(self, column: Column | None, attribute: str, value: object) -> None:
        """Change a column the schema history knows once the statement is judged (nothing if it is unknown)."""
        if column is not None:
            self.j.updates.append(lambda: setattr(column, attribute, value))

    def _rename_later(self, old: str, new: str) -> None:
        """Rename a column in the schema history once the statement is judged."""
        table = self.table
        if table is not None:
            def follow() -> None:
                column = table.columns.pop(old.lower(), None)
                if column is not None:
                    column.name = new
                    table.put(column)
            self.j.updates.append(follow)
