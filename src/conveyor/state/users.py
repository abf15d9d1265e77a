"""The dashboard's users and the key its session cookies are signed with."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from conveyor.errors import StateError
from conveyor.state import clock
from conveyor.state import tables as t
from conveyor.state.engine import Database


class UserRecords(Database):
    """Users by name with their password hash (hashing is the caller's: the store keeps what it is given)."""

    def set_user(self, name: str, password_hash: str) -> bool:
        """Add a user, or give an existing one a new hash; True when the user is new."""
        u = t.users
        with self._tx() as conn:
            updated = conn.execute(u.update().where(u.c.app == self.app, u.c.name == name).values(
                password_hash=password_hash))
            if updated.rowcount:
                return False
            conn.execute(u.insert().values(app=self.app, name=name, password_hash=password_hash,
                                           created_at=clock.iso(clock.utcnow())))
            return True

    def password_hash(self, name: str) -> str | None:
        """The user's password hash, or None when there is no such user."""
        u = t.users
        with self._tx() as conn:
            row = conn.execute(sa.select(u.c.password_hash).where(u.c.app == self.app, u.c.name == name)).first()
        return str(row.password_hash) if row is not None else None

    def remove_user(self, name: str) -> bool:
        """Forget a user; False when there was none of that name."""
        u = t.users
        with self._tx() as conn:
            return conn.execute(u.delete().where(u.c.app == self.app, u.c.name == name)).rowcount == 1

    def user_names(self) -> list[str]:
        """Every user's name, sorted."""
        u = t.users
        with self._tx() as conn:
            return [str(n) for n in conn.execute(sa.select(u.c.name).where(u.c.app == self.app)
                                                 .order_by(u.c.name)).scalars()]

    def session_key(self) -> str:
        """The key session cookies are signed with: made (256 random bits) the first time it is asked for."""
        k = t.web_keys
        with self._tx() as conn:
            row = conn.execute(sa.select(k.c.session_key).where(k.c.app == self.app)).first()
            if row is not None:
                return str(row.session_key)
        try:
            with self._tx() as conn:
                conn.execute(k.insert().values(app=self.app, session_key=secrets.token_hex(32),
                                               created_at=clock.iso(clock.utcnow())))
        except StateError:  # another dashboard made it first (the insert broke the key): theirs is the key
            pass
        with self._tx() as conn:
            return str(conn.execute(sa.select(k.c.session_key).where(k.c.app == self.app)).scalar_one())
