"""How long to wait and how many hosts at once (kept apart so importing it stays cheap)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """How long to wait and how many hosts at once: per region, from its `ssh:` settings."""

    connect_timeout: float = 10.0
    command_timeout: float = 600.0
    max_concurrency: int = 64
