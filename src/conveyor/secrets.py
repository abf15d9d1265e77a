"""Values that came from the environment are secrets: they are masked wherever we print or store text."""

from __future__ import annotations

_SECRETS: set[str] = set()
MASK = "********"


def register_secret(value: str) -> None:
    """Remember a value to mask; very short values are not worth masking (and would mangle text)."""
    if len(value) >= 4:
        _SECRETS.add(value)


def mask(text: str) -> str:
    """The text with every registered secret replaced by a mask."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text
