"""squawk, the PostgreSQL migration linter, run on a file and its findings mapped to our classes.

squawk (PyPI `squawk-cli`) parses with PostgreSQL's own grammar and knows the lock and rewrite behaviour of
each statement. Its rules become findings `squawk.<rule>`; `prefer-*` style advice is kept as a safe note
that never blocks. A rule we do not know yet is taken as needs-window: a new squawk rule is a new way to
lock or break, until someone classifies it here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from conveyor.migrations.findings import Cls

# squawk rule → (our class, the rules of ours that already say it: squawk's finding is left out beside them).
RULES: dict[str, tuple[Cls, tuple[str, ...]]] = {
    "adding-required-field": ("breaking", ("pg.add-column-not-null-no-default", "pg.new-table")),
    "ban-drop-column": ("breaking", ("pg.drop-column",)),
    "ban-drop-table": ("breaking", ("pg.drop-table",)),
    "ban-drop-database": ("breaking", ("pg.drop-object",)),
    "ban-truncate-cascade": ("breaking", ("pg.truncate",)),
    "renaming-column": ("breaking", ("pg.rename-column",)),
    "renaming-table": ("breaking", ("pg.rename-table",)),
    "ban-drop-view": ("breaking", ("pg.drop-object",)),
    "ban-drop-function": ("breaking", ("pg.drop-object",)),
    "ban-drop-type": ("breaking", ("pg.drop-object",)),
    "ban-drop-schema": ("breaking", ("pg.drop-object",)),
    "ban-drop-sequence": ("breaking", ("pg.drop-object",)),
    "ban-drop-domain": ("breaking", ("pg.drop-object",)),
    "ban-drop-extension": ("breaking", ("pg.drop-object",)),
    "ban-set-schema": ("breaking", ("pg.rename-object",)),
    "renaming-object": ("breaking", ("pg.rename-object",)),
    "adding-not-nullable-field": ("needs-window", (
        "pg.set-not-null", "pg.set-not-null-checked", "pg.set-not-null-already", "pg.new-table",
    )),
    "adding-field-with-default": ("needs-window", (
        "pg.add-column-volatile-default", "pg.add-column-default-rewrite", "pg.add-column-generated", "pg.new-table",
    )),
    "adding-foreign-key-constraint": ("needs-window", (
        "pg.add-foreign-key", "pg.add-constraint-not-valid", "pg.add-column-foreign-key", "pg.new-table",
    )),
    "adding-serial-primary-key-field": ("needs-window", (
        "pg.add-unique-constraint", "pg.add-primary-key", "pg.add-column-generated", "pg.new-table",
    )),
    "adding-primary-key-constraint": ("needs-window", (
        "pg.add-primary-key", "pg.add-constraint-using-index", "pg.new-table",
    )),
    "changing-column-type": ("needs-window", (
        "pg.change-column-type", "pg.widen-column-type", "pg.narrow-column-type", "pg.new-table",
    )),
    "constraint-missing-not-valid": ("needs-window", (
        "pg.validate-in-transaction", "pg.add-constraint-not-valid", "pg.add-check-constraint", "pg.add-foreign-key",
        "pg.add-unique-constraint", "pg.add-primary-key",
        "pg.add-exclusion-constraint", "pg.add-constraint-using-index", "pg.new-table",
    )),
    "disallowed-unique-constraint": ("needs-window", (
        "pg.add-unique-constraint", "pg.add-primary-key", "pg.add-constraint-using-index", "pg.new-table",
    )),
    "require-concurrent-index-creation": ("needs-window", ("pg.create-index-blocking", "pg.new-table")),
    "require-concurrent-index-deletion": ("needs-window", ("pg.drop-index-blocking",)),
    "require-concurrent-reindex": ("needs-window", ("pg.reindex-blocking",)),
    "require-concurrent-partition-detach": ("needs-window", ("pg.detach-partition",)),
    "ban-concurrent-index-creation-in-transaction": ("needs-window", ("pg.concurrently-in-transaction",)),
    "ban-alter-domain-with-add-constraint": ("needs-window", ("pg.alter-domain-constraint",)),
    "ban-create-domain-with-constraint": ("needs-window", ()),
    "prefer-repack": ("needs-window", ("pg.vacuum-full", "pg.cluster")),
    "syntax-error": ("needs-window", ("unparsed",)),
    # Advice: kept as notes, never blocking.
    "ban-drop-not-null": ("safe", ("pg.drop-not-null",)),
    "ban-char-field": ("safe", ()),
    "ban-drop-index": ("safe", ()),
    "ban-drop-trigger": ("safe", ()),
    "ban-drop-policy": ("safe", ()),
    "ban-drop-constraint": ("safe", ()),
    "ban-drop-default": ("safe", ()),
    "ban-set-default": ("safe", ()),
    "ban-revoke": ("safe", ()),
    "ban-disable-trigger": ("safe", ()),
    "ban-replace-view-function": ("safe", ()),
    "ban-alter-generated-expression": ("safe", ()),
    "ban-drop-generated-expression": ("safe", ()),
    "ban-alter-identity": ("safe", ()),
    "ban-replica-identity": ("safe", ()),
    "ban-duplicate-column-assignments": ("safe", ()),
    "ban-uncommitted-transaction": ("safe", ()),
    "identifier-too-long": ("safe", ()),
    "require-table-schema": ("safe", ()),
    "require-enum-value-ordering": ("safe", ()),
    "require-timeout-settings": ("safe", ()),
    "require-lock-timeout": ("safe", ()),
    "require-statement-timeout": ("safe", ()),
    "transaction-nesting": ("safe", ()),
    "unused-ignore": ("safe", ()),
    # Opt-in rules (--include) about clients that read the catalog strictly: advice for us.
    "ban-add-column": ("safe", ()),
    "ban-add-enum-value": ("safe", ()),
    "ban-add-composite-attribute": ("safe", ()),
    "ban-alter-sequence-values": ("safe", ()),
    "ban-alter-policy-condition": ("safe", ()),
    "ban-alter-policy-roles": ("safe", ()),
    "ban-create-policy": ("safe", ()),
    "ban-alter-function-options": ("safe", ()),
    "ban-alter-view-options": ("safe", ()),
    "ban-alter-role-options": ("safe", ()),
    "ban-alter-database-options": ("safe", ()),
    "ban-alter-row-level-security": ("safe", ()),
    "ban-alter-system-options": ("safe", ()),
    "ban-alter-extension": ("safe", ()),
    "ban-detach-inheritance": ("needs-window", ()),
    "ban-new-write-restriction": ("needs-window", ()),
}


@dataclass(frozen=True)
class Violation:
    """One squawk finding, located by 1-based line and 0-based column."""

    rule: str
    line: int
    column: int
    message: str
    help: str


class SquawkFailed(Exception):
    """squawk could not be run, or said something we cannot read."""


def classify(rule: str) -> tuple[Cls, tuple[str, ...]]:
    """Our class for a squawk rule, and the rules of ours that already say it."""
    if rule in RULES:
        return RULES[rule]
    if rule.startswith("prefer-"):
        return "safe", ()
    return "needs-window", ()


def find_squawk() -> str | None:
    """The squawk binary: $CONVEYOR_SQUAWK (a path, or `off`), then PATH, then beside this Python's scripts."""
    chosen = os.environ.get("CONVEYOR_SQUAWK")
    if chosen is not None:
        if chosen.strip().lower() in ("", "off", "none", "0", "false"):
            return None
        return chosen if Path(chosen).is_file() else shutil.which(chosen)
    found = shutil.which("squawk")
    if found:
        return found
    scripts = Path(sysconfig.get_path("scripts"))
    beside = scripts / "squawk"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def run_squawk(binary: str, sql: str, *, name: str = "migration.sql", pg_version: tuple[int, ...] | None = None,
               cwd: str | None = None, timeout: float = 60.0, in_transaction: bool = False) -> list[Violation]:
    """squawk's findings on some SQL (given on its standard input), with lines counted from 1; with
    `in_transaction`, squawk judges it as the runner wraps it: inside one transaction."""
    argv = [binary, "--reporter", "json", "--stdin-filepath", name]
    if in_transaction:
        argv.append("--assume-in-transaction")
    if pg_version:
        major, minor = pg_version[0], pg_version[1] if len(pg_version) > 1 else 0
        argv += ["--pg-version", f"{major}.{minor}"]
    try:
        done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SquawkFailed(f"{binary} could not run: {exc}") from exc
    out = done.stdout.strip()
    if done.returncode not in (0, 1) or (done.returncode == 1 and not out.startswith("[")):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SquawkFailed(f"{binary} exited {done.returncode}: {' '.join(tail)}")
    try:
        items = json.loads(out) if out else []
    except ValueError as exc:
        raise SquawkFailed(f"{binary} printed something that is not JSON: {out[:120]!r}") from exc
    if not isinstance(items, list):
        raise SquawkFailed(f"{binary} printed JSON that is not a list of findings")
    return [_violation(item) for item in items if isinstance(item, dict)]


def _violation(item: dict[str, object]) -> Violation:
    message = str(item.get("message") or "")
    help_text = str(item.get("help") or "")
    # squawk before 2.0 gave {"messages": [{"Note": ...}, {"Help": ...}]} instead.
    for entry in item.get("messages") or []:  # type: ignore[attr-defined]
        if isinstance(entry, dict):
            message = message or str(entry.get("Note") or "")
            help_text = help_text or str(entry.get("Help") or "")
    line = item.get("line")
    column = item.get("column")
    # squawk 2 counts lines from 0 (it adds 1 only for GitHub annotations); squawk 1 counted from 1.
    zero_based = "line_end" in item or "column_end" in item
    number = int(line) if isinstance(line, int) else 0
    return Violation(rule=str(item.get("rule_name") or "unknown"), line=number + 1 if zero_based else max(number, 1),
                     column=int(column) if isinstance(column, int) else 0, message=message, help=help_text)
