"""Judging SQL migrations before they run: safe beside the live release, only inside the migration window,
or breaking the release still running.

    verdict = judge_file("db/migrations/0007_orders_note.sql", "mariadb", "10.11", phase=None)
    verdict.cls                      # worst of its statements: safe | needs-window | breaking
    verdict.allowed()                # may it run now, in its own phase, outside the window?
    verdict.allowed("expand", in_window=True)
    verdict.blocking()               # the findings that say no

MySQL and MariaDB statements are judged by rules_mysql (online DDL by server version); PostgreSQL by squawk
(when installed) and rules_postgres. A statement Conveyor cannot read is needs-window, never silently safe.
The files of a directory are read in order, and each is judged knowing the schema the earlier ones made
(`judge_files`, or pass one `Schema` along).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.migrations.findings import (
    Dialect,
    FileVerdict,
    Finding,
    Issue,
    Phase,
    StatementVerdict,
    worst,
)
from conveyor.migrations.sqlschema import Schema
from conveyor.migrations.statements import Statement, line_offsets, split_statements

DIALECTS: tuple[Dialect, ...] = ("mysql", "mariadb", "postgresql")
TRANSACTIONS = ("per-file", "none")
NO_TRANSACTION_MARK = "-- conveyor: no-transaction"
PHASES: tuple[Phase, ...] = ("expand", "contract")
SQUAWK_HINT = ("pip install 'conveyor-deploy[postgres-lint]' (the squawk-cli package) for squawk's lock and "
               "rewrite rules")

__all__ = [
    "DIALECTS",
    "PHASES",
    "TRANSACTIONS",
    "FileVerdict",
    "Finding",
    "Schema",
    "StatementVerdict",
    "check_transaction",
    "document",
    "in_transaction",
    "judge_file",
    "judge_files",
    "judge_sql",
    "migration_phase",
    "sql_files",
]


def check_dialect(dialect: str) -> Dialect:
    """The dialect, or a UsageError naming the known ones."""
    name = dialect.strip().lower()
    if name in ("postgres", "pg"):
        name = "postgresql"
    if name not in DIALECTS:
        raise UsageError(f"unknown SQL dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    return name


def check_phase(phase: str) -> Phase:
    """The phase, or a UsageError."""
    if phase not in PHASES:
        raise UsageError(f"unknown migration phase {phase!r}; known: expand, contract")
    return phase


def _phase_of(name: str, text: str) -> Phase:
    # One definition of how a migration's phase is marked: the catalog's (contract/ directory, or a first
    # non-empty line `-- conveyor: contract`).
    from conveyor.migrations.catalog import phase_of

    return phase_of(name, text)


def migration_phase(path: str | Path) -> Phase:
    """`contract` for a file under a `contract/` directory or whose first non-empty line is
    `-- conveyor: contract`; `expand` otherwise."""
    return _phase_of(Path(path).as_posix(), _read(Path(path)))


def sql_files(directory: str | Path) -> list[Path]:
    """The `*.sql` files below a directory, in the order migrations run: by file name, then by path."""
    root = Path(directory)
    found = [p for p in root.rglob("*.sql") if p.is_file()]
    return sorted(found, key=lambda p: (p.name, p.relative_to(root).as_posix()))


def check_transaction(transaction: str | None, dialect: str) -> str:
    """How the runner wraps each file: `per-file` (one transaction around it) or `none`; by default per-file for
    PostgreSQL (Django, Rails and Flyway do so) and none for MySQL and MariaDB (their DDL commits at once)."""
    if transaction is None:
        return "per-file" if dialect == "postgresql" else "none"
    if transaction not in TRANSACTIONS:
        raise UsageError(f"unknown migrations.transaction {transaction!r}; known: per-file, none")
    return transaction


def in_transaction(text: str, dialect: str, transaction: str | None) -> bool:
    """Whether a file runs inside the runner's transaction: per-file, unless one of its lines says
    `-- conveyor: no-transaction`."""
    if check_transaction(transaction, dialect) != "per-file":
        return False
    return not any(line.strip().lower() == NO_TRANSACTION_MARK for line in text.splitlines())


def judge_sql(text: str, dialect: str, version: str | None = None, phase: Phase | None = None, *,
              path: str = "<sql>", schema: Schema | None = None, squawk: bool | str | None = True,
              cwd: str | Path | None = None, transaction: str | None = None) -> FileVerdict:
    """Judge the statements of one migration's SQL.

    `phase` defaults to the phase the text (and `path`) is marked with. `schema` carries what earlier
    migrations created; it is updated with what this one does. `squawk` (PostgreSQL): True to find the
    binary, a path to use that one, False or None not to use it (a `squawk-missing` note says so).
    `transaction`: `per-file` when the runner wraps each file in a transaction, `none` when it does not
    (default: per-file for PostgreSQL, none for MySQL and MariaDB).
    """
    name = check_dialect(dialect)
    phase = check_phase(phase) if phase else _phase_of(path, text)
    schema = schema if schema is not None else Schema()
    wrapped = in_transaction(text, name, transaction)
    schema.begin_file(in_transaction=wrapped)
    statements = split_statements(text, name)
    notes: list[Finding] = []
    algorithms: list[str | None] = [None] * len(statements)
    if name == "postgresql":
        issues, notes = _judge_postgres(text, statements, schema, version, path, squawk, cwd, wrapped)
    else:
        from conveyor.migrations.rules_mysql import Server, judge, parse_version

        server = Server(name, parse_version(version))
        issues = []
        for index, statement in enumerate(statements):
            found, algorithms[index] = judge(statement, schema, server)
            issues.append(found)
    verdicts = tuple(
        StatementVerdict(line=statement.line, statement=statement.short(), sql=statement.text,
                         findings=tuple(_finding(issue, statement, phase) for issue in found),
                         algorithm=algorithms[index])
        for index, (statement, found) in enumerate(zip(statements, issues, strict=True)))
    return FileVerdict(path=path, dialect=name, version=version, phase=phase, statements=verdicts, notes=tuple(notes))


def judge_file(path: str | Path, dialect: str, version: str | None = None, phase: Phase | None = None, *,
               name: str | None = None, schema: Schema | None = None,
               squawk: bool | str | None = True, transaction: str | None = None) -> FileVerdict:
    """Judge one migration file. `name` (default: the path) is what it is called in the verdict and what
    its phase is read from (a `contract/` directory in it)."""
    file = Path(path)
    text = _read(file)
    label = name if name is not None else str(path)
    return judge_sql(text, dialect, version, phase, path=label, schema=schema, squawk=squawk,
                     cwd=file.parent if file.parent.is_dir() else None, transaction=transaction)


def judge_files(paths: Iterable[str | Path], dialect: str, version: str | None = None,
                phase: Phase | None = None, *, squawk: bool | str | None = True,
                schema: Schema | None = None, transaction: str | None = None) -> list[FileVerdict]:
    """Judge migration files in the order given, each knowing the schema the ones before it made (and
    `schema`, when given: what a live database holds, from `conveyor.migrations.live`)."""
    schema = schema if schema is not None else Schema()
    return [judge_file(path, dialect, version, phase, schema=schema, squawk=squawk, transaction=transaction)
            for path in paths]


def document(verdicts: Sequence[FileVerdict]) -> dict[str, Any]:
    """`db lint --json`: per file and statement, and (the DESIGN contract) one flat list of statements."""
    return {
        "class": worst([v.cls for v in verdicts]),
        "allowed": all(v.allowed() for v in verdicts),
        "files": [v.to_json() for v in verdicts],
        "statements": [{"file": v.path, "line": s.line, "sql": s.sql, "class": s.cls, "rules": s.rules,
                        "hint": s.hint} for v in verdicts for s in v.statements],
    }


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the migration: {exc.strerror or exc}") from exc


def _finding(issue: Issue, statement: Statement, phase: Phase) -> Finding:
    allowed = issue.cls == "safe" or (issue.cls == "breaking" and phase == "contract")
    return Finding(rule=issue.rule, cls=issue.cls, line=statement.line, statement=statement.short(),
                   message=issue.message, hint=issue.hint, allowed=allowed)


def _note(rule: str, message: str, hint: str = "") -> Finding:
    return Finding(rule=rule, cls="safe", line=1, statement="", message=message, hint=hint, allowed=True)


def _judge_postgres(text: str, statements: list[Statement], schema: Schema, version: str | None, path: str,
                    squawk: bool | str | None, cwd: str | Path | None,
                    wrapped: bool) -> tuple[list[list[Issue]], list[Finding]]:
    from conveyor.migrations.rules_mysql import parse_version
    from conveyor.migrations.rules_postgres import Postgres, judge
    from conveyor.migrations.squawk import SquawkFailed, classify, find_squawk, run_squawk

    numbers = parse_version(version)
    server = Postgres(numbers)
    issues = [judge(statement, schema, server) for statement in statements]
    notes: list[Finding] = []
    binary = find_squawk() if squawk is True else (squawk or None)
    if binary is None:
        notes.append(_note("squawk-missing", "squawk is not installed: PostgreSQL migrations are judged by "
                           "Conveyor's own rules only", SQUAWK_HINT))
        return issues, notes
    if not statements:
        return issues, notes
    try:
        violations = run_squawk(binary, text, name=Path(path).name or "migration.sql", pg_version=numbers,
                                cwd=str(cwd) if cwd else None, in_transaction=wrapped)
    except SquawkFailed as exc:
        notes.append(_note("squawk-failed", f"squawk failed, so only Conveyor's own rules judged this file: {exc}",
                           SQUAWK_HINT))
        return issues, notes
    lines = line_offsets(text)
    starts = [statement.start for statement in statements]
    for violation in violations:
        index = _statement_at(starts, statements, lines.offset_of(violation.line, violation.column))
        cls, ours = classify(violation.rule)
        found = issues[index]
        if any(issue.rule in ours for issue in found):
            continue  # our own rule already says it, in our words
        if violation.rule == "syntax-error":
            found.append(Issue("unparsed", "needs-window", "PostgreSQL's grammar (squawk) cannot parse it: "
                               f"{violation.message}", "fix the syntax; the migration would fail"))
            continue
        message = violation.message or violation.rule
        if cls == "safe":
            message = f"{message} [advice: does not block]"
        hint = violation.help or (f"see squawk's rule {violation.rule} (https://squawkhq.com/docs/{violation.rule}),"
                                  " or run it inside the migration window" if cls != "safe" else "")
        found.append(Issue(f"squawk.{violation.rule}", cls, message, hint))
    return issues, notes


def _statement_at(starts: list[int], statements: list[Statement], offset: int) -> int:
    """The statement an offset falls in; else the last one before it (or the first)."""
    index = max(bisect.bisect_right(starts, offset) - 1, 0)
    return index if index < len(statements) else len(statements) - 1
