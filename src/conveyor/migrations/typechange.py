"""How a column's new type relates to its old one: the same, wider (it holds every old value), narrower, or
a different kind of value. Both dialects' rules ask this before they judge a type change."""

from __future__ import annotations

from conveyor.migrations.sqlschema import ColumnType


def compare_types(old: ColumnType, new: ColumnType, bytes_per_char: int = 4) -> str:
    """How `new` relates to `old`: same, widen (holds every old value), narrow (may not) or change (a
    different kind of value, which the running release would read differently)."""
    if old.sql.upper() == new.sql.upper() or (old.name, old.family, old.length, old.precision, old.scale,
                                              old.unsigned, old.values) == (
            new.name, new.family, new.length, new.precision, new.scale, new.unsigned, new.values):
        return "same"
    if old.family != new.family:
        return "change"
    if old.family == "integer":
        if new.size == old.size and new.unsigned == old.unsigned:
            return "same"
        if new.size > old.size and (new.unsigned == old.unsigned or (old.unsigned and not new.unsigned)):
            return "widen"
        return "narrow"
    if old.family in ("text", "binary"):
        old_cap, new_cap = _capacity(old, bytes_per_char), _capacity(new, bytes_per_char)
        if old.name == "VARCHAR" and new.name == "CHAR":
            return "narrow"  # CHAR pads and strips trailing spaces
        if new_cap is None or (old_cap is not None and new_cap >= old_cap):
            return "widen" if new_cap != old_cap or new.name != old.name else "same"
        return "narrow"
    if old.family == "decimal":
        if new.precision is None:
            return "widen"
        if old.precision is None:
            return "narrow"
        old_int, new_int = old.precision - (old.scale or 0), new.precision - (new.scale or 0)
        if new_int >= old_int and (new.scale or 0) >= (old.scale or 0) and new.unsigned <= old.unsigned:
            return "widen"
        return "narrow"
    if old.family == "float":
        return "widen" if new.size > old.size else "narrow"
    if old.family in ("enum", "set"):
        return "widen" if set(old.values) <= set(new.values) else "narrow"
    if old.family == "time":
        if old.name != new.name:
            return "change"
        return "widen" if (new.precision or 0) >= (old.precision or 0) else "narrow"
    return "change"


def _capacity(ctype: ColumnType, bytes_per_char: int) -> int | None:
    """Bytes a text or binary type can hold (None: unbounded)."""
    if ctype.name in ("CHAR", "VARCHAR"):
        return None if ctype.length is None else ctype.length * bytes_per_char
    return ctype.length


__all__ = ["compare_types"]
