"""The PostgreSQL server the migrations run on: its version, and the features each version brings."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.migrations.findings import Issue
from conveyor.migrations.rules_common import server_label, unparsed_issue

FEATURES: dict[str, tuple[int, ...]] = {
    "fast-default": (11,),              # ADD COLUMN ... DEFAULT <non-volatile> without a rewrite
    "not-null-from-check": (12,),       # SET NOT NULL skips its scan when a valid CHECK proves it
    "reindex-concurrently": (12,),
    "enum-value-in-transaction": (12,),
    "detach-concurrently": (14,),
}

UNPARSED_HINT = "write it as plain statements Conveyor can read, or run it inside the migration window"
WINDOW = "run it inside the migration window"


@dataclass(frozen=True)
class Postgres:
    """The PostgreSQL server the migrations run on, and its version if known."""

    version: tuple[int, ...] | None = None

    def has(self, feature: str) -> bool:
        """Whether this server has a feature (a current release is assumed when the version is unknown)."""
        return self.version is None or self.version >= FEATURES[feature]

    @property
    def label(self) -> str:
        """`PostgreSQL 16`, or `PostgreSQL (version not given: a current release assumed)`."""
        return server_label("PostgreSQL", self.version)


def unparsed(why: str) -> Issue:
    """The verdict on what cannot be read: needs the window, never silently safe."""
    return unparsed_issue(why, UNPARSED_HINT)


__all__ = ["FEATURES", "UNPARSED_HINT", "WINDOW", "Postgres", "unparsed"]
