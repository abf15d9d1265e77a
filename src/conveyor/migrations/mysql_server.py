"""MySQL and MariaDB servers: their versions, the features each has from which version, and the algorithms an
ALTER TABLE runs with, mildest first:

    instant         metadata only: no copy, no lock beyond a moment's metadata lock
    inplace         ALGORITHM=INPLACE, LOCK=NONE: reads and writes continue (some rebuild the table)
    inplace-locked  in place, but concurrent writes are blocked (LOCK=SHARED): FULLTEXT, AUTO_INCREMENT
    copy            ALGORITHM=COPY: the table is copied row by row and writes wait until it is done
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from conveyor.migrations.findings import Cls, Issue
from conveyor.migrations.rules_common import Judgement, server_label, unparsed_issue
from conveyor.migrations.sqlschema import Table
from conveyor.migrations.statements import Words

INSTANT, INPLACE, LOCKED, COPY = "instant", "inplace", "inplace-locked", "copy"

# The first version of each server with a feature (None: that server does not have it).
FEATURES: dict[str, dict[str, tuple[int, ...] | None]] = {
    # Online DDL (ALGORITHM=INPLACE, LOCK=NONE) at all.
    "online-ddl": {"mysql": (5, 6), "mariadb": (10, 0)},
    # ADD COLUMN as the last column, instantly (MySQL 8.0.12; MariaDB 10.3.2, MDEV-11369).
    "instant-add-column": {"mysql": (8, 0, 12), "mariadb": (10, 3, 2)},
    # ... anywhere in the column list (MySQL 8.0.29; MariaDB 10.4, MDEV-15562).
    "instant-add-column-anywhere": {"mysql": (8, 0, 29), "mariadb": (10, 4)},
    "instant-drop-column": {"mysql": (8, 0, 29), "mariadb": (10, 4)},
    "instant-rename-column": {"mysql": (8, 0, 28), "mariadb": None},
    # Reordering columns (MODIFY ... FIRST/AFTER) without a rebuild: MariaDB 10.4 only.
    "instant-reorder-column": {"mysql": None, "mariadb": (10, 4)},
    # Extending a VARCHAR instantly (MariaDB 10.4.3, MDEV-15563); MySQL extends it in place.
    "instant-varchar-extend": {"mysql": None, "mariadb": (10, 4, 3)},
    # A VARCHAR of fewer than 128 bytes may grow past 255 bytes without a copy (MariaDB 10.4.3).
    "varchar-short-to-any": {"mysql": None, "mariadb": (10, 4, 3)},
    # Extending a VARCHAR in place at all (MySQL 5.7, WL#6554; MariaDB 10.2.2).
    "inplace-varchar-extend": {"mysql": (5, 7), "mariadb": (10, 2, 2)},
    "instant-default": {"mysql": (8, 0, 12), "mariadb": (10, 3)},
    "instant-enum-append": {"mysql": (8, 0, 12), "mariadb": (10, 3, 7)},
    "instant-virtual-column": {"mysql": (8, 0, 12), "mariadb": None},
    "rename-column-syntax": {"mysql": (8, 0), "mariadb": (10, 5, 2)},
    "rename-index": {"mysql": (5, 7), "mariadb": (10, 5, 2)},
    # Changing a column's collation, or its character set from utf8mb3 to utf8mb4, without a copy: instantly
    # when no index covers it (MariaDB 10.4, MDEV-15564); an indexed one is rebuilt in place from 10.6
    # (MDEV-15250, MDEV-26294). MySQL copies the table for both.
    "instant-charset": {"mysql": None, "mariadb": (10, 4)},
    "inplace-indexed-collation": {"mysql": None, "mariadb": (10, 6)},
}

# Functions a DEFAULT (expression) may call and ADD COLUMN stay instant: the server evaluates the default once
# for the rows already there (MariaDB 10.11 does so even for RAND()). UUID(), UUID_SHORT(), SYSDATE() or a
# reference to another column are computed row by row, and the server copies the table; a function not named
# here is taken to be such.
_SAME_FOR_EVERY_ROW = {"now", "current_timestamp", "currenttimestamp", "curdate", "current_date", "currentdate",
                       "curtime", "current_time", "currenttime", "localtime", "localtimestamp", "utc_date",
                       "utc_time", "utc_timestamp", "unix_timestamp", "concat", "concat_ws", "lower", "upper", "abs",
                       "round", "floor", "ceil", "ceiling", "mod", "truncate", "rand", "pi", "md5", "sha1", "sha2",
                       "length", "char_length", "substring", "coalesce", "ifnull", "nullif", "if", "greatest",
                       "least", "date_add", "date_sub", "cast", "json_object", "json_array", "current_user", "user",
                       "database", "version"}

WORDS = {INSTANT: "ALGORITHM=INSTANT", INPLACE: "ALGORITHM=INPLACE, LOCK=NONE",
          LOCKED: "ALGORITHM=INPLACE with writes blocked (LOCK=SHARED)", COPY: "ALGORITHM=COPY"}
UNIQUE_HINT = ("if the table holds a duplicate (or a write makes one while it builds) the ALTER fails without harm: "
               "check first with SELECT col, COUNT(*) ... GROUP BY col HAVING COUNT(*) > 1; from then on a write "
               "of the running release that duplicates a value fails")
KEEP_WRITING = "reads and writes continue"
UNPARSED_HINT = ("write it as plain statements Conveyor can read (one ALTER action it knows per line helps), "
                  "or run it inside the migration window")


@dataclass(frozen=True)
class Server:
    """The database server the migrations run on: MySQL or MariaDB, and its version if known."""

    flavor: str                              # mysql | mariadb
    version: tuple[int, ...] | None = None   # None: assume a current release

    def has(self, feature: str) -> bool:
        """Whether this server has a feature (a current release is assumed when the version is unknown)."""
        since = FEATURES[feature][self.flavor]
        if since is None:
            return False
        return self.version is None or self.version >= since

    @property
    def label(self) -> str:
        """`MariaDB 10.11.6`, or `MySQL (version not given: a current release assumed)`."""
        return server_label("MariaDB" if self.flavor == "mariadb" else "MySQL", self.version)


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """`8.0.35`, `10.11.6-MariaDB-0+deb12u1` or `16` into a tuple of numbers; None when absent."""
    if not text:
        return None
    match = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def unparsed(why: str) -> Issue:
    """The verdict on what cannot be read: needs the window, never silently safe."""
    return unparsed_issue(why, UNPARSED_HINT)


@dataclass
class MySQLJudgement(Judgement):
    """A MySQL judgement also collects the algorithm each finding claims: the statement's is the heaviest."""

    algorithms: list[str | None] = field(default_factory=list)

    def add(self, rule: str, cls: Cls, message: str, hint: str = "", algorithm: str | None = None) -> None:
        super().add(rule, cls, message, hint)
        self.algorithms.append(algorithm)

    def unparsed(self, why: str) -> None:
        super().unparsed(why)
        self.algorithms.append(None)   # one per issue


def per_row(expression: Any) -> bool:
    """Whether a column's DEFAULT expression is computed row by row (so adding the column copies the table)."""
    from sqlglot import exp

    if expression is None:
        return False
    if any(True for _ in expression.find_all(exp.Column)):
        return True
    for function in expression.find_all(exp.Func):
        if isinstance(function, exp.Cast | exp.Paren):
            continue
        name = str(function.name if isinstance(function, exp.Anonymous) else function.sql_name()).lower()
        if name not in _SAME_FOR_EVERY_ROW and name.replace("_", "") not in _SAME_FOR_EVERY_ROW:
            return True
    return False


def rebuild(table: Table | None, what: str) -> tuple[str, Cls, str, str, str]:
    """The verdict on a statement that rebuilds a whole InnoDB table in place (ENGINE=InnoDB, FORCE, ROW_FORMAT=,
    OPTIMIZE TABLE): its rule, class, message, hint and algorithm."""
    if table is None or not table.keys_known:
        return ("rebuild-table", "needs-window", f"{what} rebuilds the whole table; its indexes are not known from "
                "the earlier migrations, and with a FULLTEXT index the server blocks writes while it runs",
                "lint with --database URL (the live schema) or with the migration that created the table, or run "
                "it inside the migration window", INPLACE)
    if table.fulltext:
        return ("rebuild-table", "needs-window", f"{what} rebuilds a table with a FULLTEXT index, which the server "
                "does only while blocking writes (LOCK=SHARED)", "run it inside the migration window", LOCKED)
    return ("rebuild-table-online", "safe", f"{what} rebuilds the table in place ({WORDS[INPLACE]}): "
            f"{KEEP_WRITING}; it is heavy I/O, and replicas lag by as long as it runs", "", INPLACE)


def explicit_options(words: Words) -> tuple[str | None, str | None]:
    """ALGORITHM [=] x and LOCK [=] x among some words."""
    algorithm = lock = None
    while not words.done():
        if words.take("ALGORITHM"):
            words.take("=")
            value = words.next()
            algorithm = value.value if value else None
        elif words.take("LOCK"):
            words.take("=")
            value = words.next()
            lock = value.value if value else None
        else:
            words.next()
    return algorithm, lock


def enum_bytes(family: str, count: int) -> int:
    """Bytes an ENUM or SET with `count` members takes."""
    if family == "enum":
        return 1 if count <= 255 else 2
    return next(size for limit, size in ((8, 1), (16, 2), (24, 3), (32, 4), (64, 8)) if count <= limit)


__all__ = ["COPY", "FEATURES", "INPLACE", "INSTANT", "KEEP_WRITING", "LOCKED", "UNIQUE_HINT", "UNPARSED_HINT", "WORDS",
           "MySQLJudgement", "Server", "enum_bytes", "explicit_options", "parse_version", "per_row", "rebuild",
           "unparsed"]
