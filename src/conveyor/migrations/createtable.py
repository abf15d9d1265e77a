"""A CREATE TABLE read into the schema history: its columns (sqlglot), its default character set, and (MySQL,
MariaDB) its keys: the primary key, UNIQUE, plain, FULLTEXT and SPATIAL indexes, inline or listed.

sqlglot cannot parse every MySQL table option: a PARTITION BY clause is taken off before the statement is
parsed again (partitioning changes no column).
"""

from __future__ import annotations

import re
from typing import Any

from conveyor.migrations.sqlschema import (
    Index,
    Table,
    canonical_charset,
    column_from_definition,
    is_command,
    parse_statement,
)
from conveyor.migrations.statements import Words, is_mysql, lex

_KINDS = {"KEY": "index", "INDEX": "index", "UNIQUE": "unique", "FULLTEXT": "fulltext", "SPATIAL": "spatial"}


def parse_create(text: str, dialect: str) -> Any:
    """sqlglot's tree of a CREATE TABLE (without its PARTITION BY clause when sqlglot cannot read that); None
    when it cannot be parsed."""
    tree = parse_statement(text, dialect)
    if (tree is None or is_command(tree)) and is_mysql(dialect):
        options = _after_columns(text, dialect)
        match = re.search(r"\bPARTITION\s+BY\b", options, re.IGNORECASE)
        if match:
            tree = parse_statement(text[:len(text) - len(options) + match.start()], dialect)
    return None if tree is None or is_command(tree) else tree


def table_from_create(tree: Any, dialect: str, text: str) -> Table | None:
    """The table a CREATE TABLE defines (its columns, default character set, keys)."""
    from sqlglot import exp

    if not isinstance(tree, exp.Create) or str(tree.args.get("kind", "")).upper() != "TABLE":
        return None
    target = tree.this
    table_expr = target.this if isinstance(target, exp.Schema) else target
    if not isinstance(table_expr, exp.Table):
        return None
    table = Table(name=table_expr.name)
    if isinstance(target, exp.Schema):
        for item in target.expressions:
            if isinstance(item, exp.ColumnDef):
                table.put(column_from_definition(item, dialect).column)
    upper = [w.value for w in lex(text, dialect) if w.kind == "word"]
    table.fulltext = "FULLTEXT" in upper
    match = re.search(r"(?:CHARSET|CHARACTER\s+SET)\s*=?\s*[`'\"]?(\w+)", _after_columns(text, dialect), re.I)
    if match:
        table.charset = canonical_charset(match.group(1))
    if is_mysql(dialect) and isinstance(target, exp.Schema):
        _read_keys(text, dialect, table)
    return table


def index_definition(words: Words) -> tuple[str | None, tuple[str, ...]]:
    """`[name] [USING x] (col [(length)] [ASC|DESC], ...)` from here: the index's name, if given, and its
    columns, lower-cased."""
    name = None
    if not words.at("("):
        word = words.peek()
        if word is not None and word.is_name and word.value not in ("USING",):
            name = words.name()
    while not words.done() and not words.at("("):
        words.next()
    columns: list[str] = []
    if words.take("("):
        depth = 1
        expect_name = True
        while (word := words.next()) is not None:
            if word.kind == "punct" and word.value == "(":
                depth += 1
            elif word.kind == "punct" and word.value == ")":
                depth -= 1
                if depth == 0:
                    break
            elif depth == 1 and word.kind == "punct" and word.value == ",":
                expect_name = True
            elif depth == 1 and expect_name and word.is_name:
                columns.append(word.name.lower())
                expect_name = False
    return name, tuple(columns)


def key_of(words: Words) -> Index | None:
    """The key a CREATE TABLE item or an ALTER TABLE ADD defines, read from here; None when it is none."""
    constraint = None
    if words.take("CONSTRAINT") and not words.at_any("PRIMARY", "UNIQUE", "FOREIGN", "CHECK"):
        constraint = words.name()
    if words.take("PRIMARY", "KEY"):
        _, columns = index_definition(words)
        return Index("PRIMARY", columns, "primary")
    kind_word = words.at_any(*_KINDS)
    if kind_word is None:
        if words.take("FOREIGN", "KEY"):
            # InnoDB indexes a foreign key's columns (by the constraint's name) unless an index starts with them.
            name, columns = index_definition(words)
            return Index(name or constraint or "_".join(columns), columns, "foreign")
        return None
    words.next()
    kind = _KINDS[kind_word]
    if kind != "index" and not words.take("KEY"):
        words.take("INDEX")
    name, columns = index_definition(words)
    return Index(name or constraint or (columns[0] if columns else "?"), columns, kind)


def _read_keys(text: str, dialect: str, table: Table) -> None:
    """The keys of a CREATE TABLE: listed among its columns, or inline (`id INT PRIMARY KEY`, `UNIQUE`)."""
    words = lex(text, dialect)
    open_at = next((i for i, w in enumerate(words) if w.kind == "punct" and w.value == "("), None)
    if open_at is None:
        return
    inner = Words(words[open_at + 1:], text)
    foreign: list[Index] = []
    for part in inner.split(","):
        first = part.peek()
        if first is None:
            continue
        if first.kind == "word" and first.value in ("CONSTRAINT", "PRIMARY", "FOREIGN", *_KINDS):
            index = key_of(part)
            if index is None:
                continue
            if index.kind == "foreign":
                foreign.append(index)
            else:
                table.add_index(index)
            continue
        column = part.name()
        rest = part.keywords()
        if column is None:
            continue
        if "PRIMARY" in rest and "KEY" in rest:
            table.add_index(Index("PRIMARY", (column.lower(),), "primary"))
        elif "UNIQUE" in rest:
            table.add_index(Index(column, (column.lower(),), "unique"))
    for index in foreign:
        if not any(i.columns[:len(index.columns)] == index.columns for i in table.indexes.values()):
            table.add_index(Index(index.name, index.columns, "index"))
    table.keys_known = True


def _after_columns(text: str, dialect: str) -> str:
    """The table options of a CREATE TABLE: its text after the column list."""
    depth = 0
    for word in lex(text, dialect):
        if word.kind == "punct" and word.value == "(":
            depth += 1
        elif word.kind == "punct" and word.value == ")":
            depth -= 1
            if depth == 0:
                return text[word.end:]
    return ""


__all__ = ["index_definition", "key_of", "parse_create", "table_from_create"]
