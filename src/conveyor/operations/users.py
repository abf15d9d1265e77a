"""The dashboard's users: `conveyor user add`, and checking a password at sign-in (argon2id, argon2-cffi)."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from typing import TYPE_CHECKING

from conveyor.errors import UsageError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from conveyor.state.store import Store

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
MIN_PASSWORD = 8


@cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


@cache
def _decoy() -> str:
    """A hash to check a password against when the user does not exist, so both take the same time."""
    return _hasher().hash("no such user")


def add_user(store: Store, name: str, password: str) -> bool:
    """Store `name` with an argon2 hash of `password` (a new password for an existing user); True if new."""
    if not USER_NAME.match(name):
        raise UsageError(f"a user name is 1 to 100 letters, digits and . _ @ + - (starting with a letter or digit), "
                         f"got {name!r}")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password must have at least {MIN_PASSWORD} characters")
    return store.set_user(name, _hasher().hash(password))


def remove_user(store: Store, name: str, by: str) -> None:
    """Remove `name` (audited as done `by`); the dashboard's sessions of that user stop working at once."""
    if not store.remove_user(name):
        known = ", ".join(store.user_names()) or "none"
        raise UsageError(f"no dashboard user {name!r} (users: {known})")
    store.add_event("user_removed", by, name=name)


def session_key(password_hash: str) -> str:
    """What a session keeps of its user's password hash: a new password, or the user removed (and added
    again), and the session no longer matches."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def authenticate(store: Store, name: str, password: str) -> bool:
    """Whether `password` is `name`'s (a missing user takes as long to refuse as a wrong password)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    stored = store.password_hash(name) if USER_NAME.match(name) else None
    try:
        ok = _hasher().verify(stored or _decoy(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None
