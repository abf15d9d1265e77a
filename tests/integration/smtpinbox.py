"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, with AUTH LOGIN/PLAIN.

It accepts one user and password (AUTH over the plain connection, as a local relay would) and refuses
anything else, so a test proves the password from the config reached the server, and went nowhere else.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from promstack import free_port


@dataclass(frozen=True)
class Mail:
    """One message as the server received it."""

    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        """The decoded Subject header."""
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The plain-text body (the text part of a multipart message)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        assert part is not None, self.message
        return str(part.get_content())


class Inbox:
    """aiosmtpd's handler: keeps each message and wakes whoever waits for one."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.mails: list[Mail] = []
        self.logins: list[str] = []
        self.changed = threading.Condition()
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.changed:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
            self.changed.notify_all()
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            with self.changed:
                self.logins.append(user)
            if (user, password) == (self.user, self.password):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        """Wait until at least `count` messages arrived; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.mails) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:g}s waiting for {count} mail(s); "
                                         f"got {len(self.mails)}")
                self.changed.wait(left)
            return list(self.mails)


@contextmanager
def smtp_server(user: str, password: str) -> Iterator[Inbox]:
    """An SMTP server on a free loopback port until the block ends."""
    inbox = Inbox(user, password)
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port, authenticator=inbox.authenticate,
                            auth_require_tls=False, ready_timeout=10)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
