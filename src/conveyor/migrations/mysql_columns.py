"""MySQL and MariaDB: a column definition (MODIFY, CHANGE) compared with the one it replaces: a type that
widens or narrows, a character set, nullability, a default, a position."""

from __future__ import annotations

from conveyor.migrations.findings import Cls
from conveyor.migrations.mysql_server import (
    COPY,
    INPLACE,
    INSTANT,
    KEEP_WRITING,
    WORDS,
    MySQLJudgement,
    Server,
    enum_bytes,
)
from conveyor.migrations.rules_common import UNKNOWN_COLUMN_HINT, AlterTable
from conveyor.migrations.sqlschema import Column, bytes_per_char, canonical_charset
from conveyor.migrations.typechange import compare_types

# The collation a character set gets when none is named (MariaDB's defaults).
_DEFAULT_COLLATION = {"utf8mb4": "utf8mb4_general_ci", "utf8mb3": "utf8mb3_general_ci", "latin1": "latin1_swedish_ci",
                      "ascii": "ascii_general_ci"}


def _collation_changes(existing: Column, new: Column, charset: str | None) -> bool:
    """Whether a MODIFY names a collation other than the column's (a column without one has its character set's
    default)."""
    if new.collation is None:
        return False
    old = existing.collation or _DEFAULT_COLLATION.get(charset or "")
    return old is None or _alias(new.collation) != _alias(old)


def _alias(collation: str) -> str:
    return collation.replace("utf8_", "utf8mb3_")


class ColumnChanges(AlterTable[Server]):
    """What an ALTER TABLE's MODIFY and CHANGE actions do to a column."""

    j: MySQLJudgement

    def add(self, rule: str, cls: Cls, message: str, hint: str = "", algorithm: str | None = None) -> None:
        self.j.add(rule, cls, message, hint, algorithm)

    def _rename_column(self, old: str, new: str) -> None:
        algorithm = INSTANT if self.server.has("instant-rename-column") else INPLACE
        self.add("rename-column", "breaking",
                 f"renaming column {old} to {new}: the running release still uses the old name",
                 "add the new column, write both from the code, backfill, move reads; drop the old one in a contract "
                 "migration", algorithm)
        self._rename_later(old, new)

    # -- a column definition compared with the one it replaces ------------------------------------------

    def _modify(self, old_name: str | None, text: str) -> None:
        parsed = self._parse_column(text)
        if parsed is None:
            return
        new = parsed.column
        old_name = old_name or new.name
        if old_name.lower() != new.name.lower():
            self._rename_column(old_name, new.name)
        existing = self.table.column(old_name) if self.table else None
        self._compare(existing, new, parsed.position)
        table = self.table
        if table is not None:
            def follow() -> None:
                table.columns.pop(old_name.lower(), None)
                table.put(new)  # without its own CHARACTER SET it now has the table's default
            self.j.updates.append(follow)

    def _compare(self, existing: Column | None, new: Column, position: str | None) -> None:
        if existing is None or existing.type is None or new.type is None:
            self.add("modify-column-unknown", "needs-window",
                     f"the current definition of {new.name} is not known from the earlier migrations, so Conveyor "
                     "cannot tell whether this changes its type (a type change copies the table, and may break the "
                     "running release)", UNKNOWN_COLUMN_HINT)
            return
        old_type, new_type = existing.type, new.type
        table_charset = self.table.charset if self.table else None
        old_charset = canonical_charset(existing.charset or table_charset)
        # MODIFY/CHANGE without CHARACTER SET gives the column the table's default character set, not the one
        # it had: a column with its own character set is re-encoded then.
        new_charset = canonical_charset(new.charset or table_charset)
        strings = new_type.family in ("text", "enum", "set")
        if new_charset and old_charset and new_charset != old_charset and strings:
            online = self._charset_online(existing, new, old_charset, new_charset)
            if online is None:
                implicit = "" if new.charset else " (no CHARACTER SET given: the table's default applies)"
                self.add("change-column-charset", "needs-window",
                         f"changing the character set of {new.name} from {old_charset} to {new_charset}{implicit} "
                         "re-encodes it, copying the table (ALGORITHM=COPY): writes wait",
                         "say the column's CHARACTER SET in the MODIFY to keep it, or run it inside the migration "
                         "window", COPY)
                return
            self.add("change-column-charset-online", "safe",
                     f"{new.name} from utf8mb3 to utf8mb4 keeps every stored byte: "
                     f"{'metadata only' if online == INSTANT else 'its index is rebuilt in place'} ({WORDS[online]} "
                     f"on {self.server.label})", algorithm=online)
            self._same_type(existing, new, position, reported=True)
            return
        bpc = bytes_per_char(new if new.charset else existing, self.table)
        relation = compare_types(old_type, new_type, bpc or 4)
        if relation == "same" and strings and _collation_changes(existing, new, new_charset):
            self._collation(existing, new)
            self._same_type(existing, new, position, reported=True)
            return
        if relation == "same":
            self._same_type(existing, new, position)
            return
        if relation == "widen":
            self._widen(existing, new, bpc)
        else:
            self.add("change-column-type", "needs-window",
                     f"changing {new.name} from {old_type.sql} to {new_type.sql} copies the table "
                     "(ALGORITHM=COPY): writes wait", "run it inside the migration window", COPY)
            self._narrowed(new.name, old_type, new_type, relation)
        self._nullability(existing, new, report_relaxing=False)

    def _charset_online(self, existing: Column, new: Column, old: str, charset: str) -> str | None:
        """The algorithm of an online change of a column's character set (utf8mb3 to utf8mb4 on MariaDB 10.4+,
        the type and its length prefix kept); None when the table is copied."""
        old_type, new_type = existing.type, new.type
        if not (self.server.has("instant-charset") and old == "utf8mb3" and charset == "utf8mb4"):
            return None
        if old_type is None or new_type is None or compare_types(old_type, new_type, 4) != "same" \
                or new_type.name not in ("CHAR", "VARCHAR") or (self.table is not None and self.table.fulltext):
            return None
        length = new_type.length or 1
        if new_type.name == "VARCHAR" and (length * 3 <= 255) != (length * 4 <= 255):
            return None   # the length prefix would grow from 1 to 2 bytes
        if self.table is None or not self.table.keys_known:
            return None
        if not self.table.indexed(new.name):
            return INSTANT
        return INPLACE if self.server.has("inplace-indexed-collation") else None

    def _collation(self, existing: Column, new: Column) -> None:
        """A column's collation changes, its character set kept."""
        table = self.table
        known = table is not None and table.keys_known and not table.fulltext
        indexed = table is None or table.indexed(new.name)
        # An ENUM's or SET's collation decides which member a value is: the server copies the table for it.
        known = known and new.type is not None and new.type.family == "text"
        if known and self.server.has("instant-charset") and not indexed:
            algorithm: str | None = INSTANT
        elif known and self.server.has("inplace-indexed-collation"):
            algorithm = INPLACE
        else:
            algorithm = None
        if algorithm is None:
            self.add("change-column-collation", "needs-window",
                     f"changing the collation of {new.name} copies the table (ALGORITHM=COPY) on "
                     f"{self.server.label}{' (an index covers it)' if indexed else ''}: writes wait",
                     "run it inside the migration window", COPY)
            return
        self.add("change-column-collation", "safe",
                 f"changing only the collation of {new.name}: "
                 f"{'metadata only' if algorithm == INSTANT else 'its index is rebuilt in place'} "
                 f"({WORDS[algorithm]} on {self.server.label})",
                 "a UNIQUE index over it fails the ALTER, without harm, if two values become equal" if indexed else "",
                 algorithm)

    def _same_type(self, existing: Column, new: Column, position: str | None, *, reported: bool = False) -> None:
        if existing.not_null != new.not_null:
            self._nullability(existing, new, report_relaxing=not reported)
        elif reported:
            pass
        elif position is not None:
            algorithm = INSTANT if self.server.has("instant-reorder-column") else INPLACE
            rebuild = "" if algorithm == INSTANT else ", rebuilding the table in place"
            self.add("reorder-column", "safe", f"moving {new.name} ({position}) keeps its values{rebuild} "
                     f"({WORDS[algorithm]} on {self.server.label})", algorithm=algorithm)
        else:
            self.add("modify-column-attributes", "safe",
                     f"{new.name} keeps its type and nullability: only its attributes change, in place",
                     algorithm=INPLACE)
        enum = new.type is not None and new.type.family == "enum"   # NOT NULL ENUM: its first member is the default
        if existing.has_default and not new.has_default and new.not_null and existing.not_null and not enum:
            self.add("drop-default-not-null", "breaking",
                     f"{new.name} is NOT NULL and loses its default: the running release's INSERTs that leave it "
                     "out fail", "keep the DEFAULT until every release writes the column")

    def _nullability(self, existing: Column, new: Column, *, report_relaxing: bool) -> None:
        if new.not_null and not existing.not_null:
            self.add("set-not-null", "breaking",
                     f"making {new.name} NOT NULL: the running release's writes of NULL to it (and, without a "
                     "DEFAULT, its INSERTs that leave it out) fail; the table is also rebuilt, and the ALTER fails if "
                     "a row holds NULL", "make it NOT NULL in a contract migration, once every release writes a value "
                     "(backfill the NULLs first)", INPLACE)
        elif report_relaxing and existing.not_null and not new.not_null:
            self.add("drop-not-null", "safe",
                     f"making {new.name} NULL-able rebuilds the table in place ({WORDS[INPLACE]}): {KEEP_WRITING}",
                     algorithm=INPLACE)

    def _widen(self, existing: Column, new: Column, bpc: int | None) -> None:
        old_type, new_type = existing.type, new.type
        assert old_type is not None
        assert new_type is not None
        if old_type.name == new_type.name == "VARCHAR" and old_type.length and new_type.length:
            self._widen_varchar(new.name, old_type.length, new_type.length, bpc)
        elif old_type.family in ("enum", "set") and new_type.values[:len(old_type.values)] == old_type.values \
                and enum_bytes(old_type.family, len(old_type.values)) == enum_bytes(new_type.family,
                                                                                      len(new_type.values)):
            algorithm = INSTANT if self.server.has("instant-enum-append") else INPLACE
            self.add("extend-enum", "safe", f"adding members at the end of {new.name}'s "
                     f"{old_type.family.upper()} changes only metadata ({WORDS[algorithm]})", algorithm=algorithm)
        else:
            self.add("change-column-type", "needs-window",
                     f"changing {new.name} from {old_type.sql} to {new_type.sql} copies the table "
                     "(ALGORITHM=COPY): writes wait; the new type holds every old value, so the running release "
                     "is not affected", "run it inside the migration window", COPY)

    def _widen_varchar(self, name: str, old: int, new: int, bpc: int | None) -> None:
        # The row stores a VARCHAR's length in 1 byte up to 255 bytes, in 2 beyond: InnoDB can extend a column
        # in place only while that prefix stays the same size. Without a known character set, both 1 and 4
        # bytes per character must agree.
        candidates = [bpc] if bpc else [1, 4]
        same_class = all((old * b <= 255) == (new * b <= 255) for b in candidates)
        short_to_any = self.server.has("varchar-short-to-any") and all(old * b < 128 for b in candidates)
        if self.server.has("inplace-varchar-extend") and (same_class or short_to_any):
            algorithm = INSTANT if self.server.has("instant-varchar-extend") else INPLACE
            self.add("widen-varchar", "safe",
                     f"extending {name} from VARCHAR({old}) to VARCHAR({new}) keeps its length prefix: "
                     f"{'metadata only' if algorithm == INSTANT else 'in place'} ({WORDS[algorithm]} on "
                     f"{self.server.label})", algorithm=algorithm)
            return
        why = ("its length prefix grows from 1 to 2 bytes (past 255 bytes)" if bpc else
               "it may cross 255 bytes, where its length prefix grows to 2 bytes, and its character set is not "
               "known")
        self.add("widen-varchar-copy", "needs-window",
                 f"extending {name} from VARCHAR({old}) to VARCHAR({new}) copies the table (ALGORITHM=COPY): {why}",
                 "run it inside the migration window" + ("" if bpc else "; name the CHARACTER SET of the column or "
                                                         "the table's DEFAULT CHARSET in the migrations so Conveyor "
                                                         "knows"), COPY)


__all__ = ["ColumnChanges"]
