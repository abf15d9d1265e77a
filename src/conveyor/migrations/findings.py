"""What the migration linter says: findings, per statement, per file; and the three classes they fall in.

    safe          online, and compatible with the release still running
    needs-window  takes strong locks or rewrites a table: only inside the environment's migration_window
    breaking      not compatible with the release still running: refused in the expand phase, allowed in
                  the contract phase (once no region runs a release that needs the old schema)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Cls = Literal["safe", "needs-window", "breaking"]
Phase = Literal["expand", "contract"]
Dialect = Literal["mysql", "mariadb", "postgresql"]

CLASSES: tuple[Cls, ...] = ("safe", "needs-window", "breaking")
_RANK = {name: rank for rank, name in enumerate(CLASSES)}

# What a MySQL/MariaDB server does for an ALTER TABLE or CREATE INDEX, mildest first.
ALGORITHMS = ("instant", "inplace", "inplace-locked", "copy")


def worst(classes: list[Cls] | tuple[Cls, ...]) -> Cls:
    """The worst of some classes (safe < needs-window < breaking); safe when there are none."""
    return max(classes, key=_RANK.__getitem__, default="safe")


def worst_algorithm(algorithms: list[str | None]) -> str | None:
    """The heaviest of some algorithms; None when none is claimed."""
    known = [a for a in algorithms if a]
    return max(known, key=ALGORITHMS.index) if known else None


def blocks(cls: Cls, phase: Phase, *, in_window: bool = False) -> bool:
    """Whether a finding of this class stops a migration of this phase from running now."""
    if cls == "breaking" and phase == "expand":
        return True
    return cls == "needs-window" and not in_window


class Issue(NamedTuple):
    """What a rule says about a statement, before it is placed in a file."""

    rule: str
    cls: Cls
    message: str
    hint: str = ""


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one statement."""

    rule: str          # e.g. mysql.add-column-not-null-no-default, pg.drop-column, squawk.renaming-column
    cls: Cls
    line: int          # 1-based line of the statement in its file
    statement: str     # the statement, shortened to one line
    message: str
    hint: str
    allowed: bool      # safe, or breaking in a contract migration; needs-window is for the window to allow

    def to_json(self) -> dict[str, Any]:
        """The finding as `db lint --json` prints it."""
        return {"rule": self.rule, "class": self.cls, "message": self.message, "hint": self.hint,
                "allowed": self.allowed}


@dataclass(frozen=True)
class StatementVerdict:
    """One statement, its findings, and the algorithm the server is expected to use (MySQL, MariaDB)."""

    line: int
    statement: str             # shortened to one line
    sql: str                   # as written
    findings: tuple[Finding, ...]
    algorithm: str | None = None   # instant | inplace | inplace-locked | copy, where the rules know it

    @property
    def cls(self) -> Cls:
        """The worst class of its findings; safe without any."""
        return worst([f.cls for f in self.findings])

    @property
    def rules(self) -> list[str]:
        """The ids of its findings' rules."""
        return [f.rule for f in self.findings]

    @property
    def hint(self) -> str:
        """The hint of its worst finding."""
        cls = self.cls
        return next((f.hint for f in self.findings if f.cls == cls and f.hint), "")

    def to_json(self) -> dict[str, Any]:
        """The statement as `db lint --json` prints it."""
        document: dict[str, Any] = {"line": self.line, "statement": self.statement, "class": self.cls,
                                    "findings": [f.to_json() for f in self.findings]}
        if self.algorithm:
            document["algorithm"] = self.algorithm
        return document


@dataclass(frozen=True)
class FileVerdict:
    """A migration file judged: its statements, and notes about how it was judged."""

    path: str
    dialect: Dialect
    version: str | None
    phase: Phase
    statements: tuple[StatementVerdict, ...]
    notes: tuple[Finding, ...] = field(default=())   # e.g. squawk-missing: judged by our own rules only

    @property
    def cls(self) -> Cls:
        """The worst class of its statements."""
        return worst([s.cls for s in self.statements])

    @property
    def findings(self) -> list[Finding]:
        """Every finding of every statement, in file order."""
        return [f for s in self.statements for f in s.findings]

    def blocking(self, phase: Phase | None = None, *, in_window: bool = False) -> list[Finding]:
        """The findings that stop this file from running now: breaking in the expand phase, and
        needs-window outside the migration window."""
        phase = phase or self.phase
        return [f for f in self.findings if blocks(f.cls, phase, in_window=in_window)]

    def allowed(self, phase: Phase | None = None, *, in_window: bool = False) -> bool:
        """Whether this file may run now, in `phase` (its own phase by default)."""
        return not self.blocking(phase, in_window=in_window)

    def to_json(self) -> dict[str, Any]:
        """The file as `db lint --json` prints it."""
        return {"path": self.path, "phase": self.phase, "class": self.cls, "allowed": self.allowed(),
                "notes": [n.to_json() for n in self.notes],
                "statements": [s.to_json() for s in self.statements]}
