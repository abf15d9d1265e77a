"""Who is asking: a signed session cookie (users of the state store, argon2), or a reverse proxy's header.

The session cookie is signed with a key kept in the state store (`Store.session_key`), Secure, HttpOnly and
SameSite=Lax; it carries the user's name and the session's CSRF token, which every POST must send back
(`csrf_token` form field). A trusted header (`web.trusted_header`) is believed only from `web.trusted_proxies`.
Pages need a user unless `web.public: true`; approving always does.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conveyor.config.models import WebSettings
from conveyor.operations.users import session_key
from conveyor.state.store import Store

SESSION_COOKIE = "conveyor_session"
SESSION_SECONDS = 12 * 3600
FORM_LIMIT = 64 * 1024  # bytes of a form: sign-in and approvals are a few fields

Handler = Callable[[Request], Awaitable[Response]]


class Auth:
    """The dashboard's answer to "who is this, and may they?"."""

    def __init__(self, store: Store, settings: WebSettings) -> None:
        self.store = store
        self.settings = settings

    def user(self, request: Request) -> str | None:
        """The signed-in user, the proxy's user, or None."""
        header = self.settings.trusted_header
        if header and self.settings.trusts(request.client.host if request.client else None):
            named = request.headers.get(header, "").strip()
            if named:
                return named
        name = request.session.get("user")
        if not isinstance(name, str):
            return None
        stored = self.store.password_hash(name)
        if stored is None or not hmac.compare_digest(str(request.session.get("key", "")), session_key(stored)):
            return None  # removed from the store, or a new password since: signed out
        return name

    def signed_in(self, request: Request, name: str) -> None:
        """Start a new session for `name`, bound to their password as it is now."""
        request.session.clear()  # a planted cookie's token does not carry over
        request.session["user"] = name
        request.session["key"] = session_key(self.store.password_hash(name) or "")

    def reader(self, handler: Handler) -> Handler:
        """`handler` for a signed-in user, or anyone when the dashboard is public; others are sent to sign in."""

        async def guarded(request: Request) -> Response:
            if self.settings.public or self.user(request) is not None:
                return await handler(request)
            if request.headers.get("accept", "").startswith("text/event-stream"):
                raise HTTPException(401, "sign in first")
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

        return guarded


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def posted(request: Request) -> dict[str, str]:
    """A POSTed urlencoded form, refused (403) unless it carries this session's CSRF token.

    Read with the standard library: the dashboard's forms are a few urlencoded fields, never files, so the
    multipart parser Starlette's `request.form()` needs is not worth a dependency."""
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise HTTPException(413, "form too large")
    fields = {key: values[-1] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(fields.get("csrf_token", ""), expected):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return fields


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never //elsewhere or a URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"
