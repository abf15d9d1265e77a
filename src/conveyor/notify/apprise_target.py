"""One Apprise URL as a notification target: Slack, email, Teams, a JSON webhook, ...

Apprise is imported on the target's first message, on its courier's thread: `conveyor --help` never loads
it, and a deployment does not wait for it. Apprise reports why a message failed only through `logging`,
so its warnings are collected per thread and the last one becomes the reason given to the user.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from conveyor.notify.delivery import DeliveryError, redact
from conveyor.notify.message import Message
from conveyor.secrets import mask


class _ThreadLog(logging.Handler):
    """Apprise's warnings, kept apart for each thread that asked for them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        lines = self.lines.get(record.thread or 0)
        if lines is None:
            return
        # A malformed log call inside Apprise must not hide the failure it was about.
        with suppress(Exception):
            lines.append(record.getMessage())


_LOG = _ThreadLog()
_INSTALL = threading.Lock()


@contextmanager
def _apprise_warnings() -> Iterator[list[str]]:
    """Apprise's warnings logged on this thread while the block runs (and nowhere else: not on stderr)."""
    logger = logging.getLogger("apprise")
    with _INSTALL:
        if _LOG not in logger.handlers:
            logger.addHandler(_LOG)
            # Apprise's messages are ours to report, masked; they must not reach the root logger's handlers.
            logger.propagate = False
    ident = threading.get_ident()
    lines: list[str] = []
    _LOG.lines[ident] = lines
    try:
        yield lines
    finally:
        _LOG.lines.pop(ident, None)


class AppriseTarget:
    """Sends messages to one Apprise URL, each within `timeout` seconds (connect, then read)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._apprise: Any = None

    def _load(self) -> Any:
        import apprise

        # Apprise names its sender after the app: "Conveyor" in chat, in the mail's From.
        asset = apprise.AppriseAsset(app_id="Conveyor", app_desc="Conveyor deployments")
        with _apprise_warnings() as warnings:
            plugin = apprise.Apprise.instantiate(self.url, asset=asset, suppress_exceptions=True)
        if plugin is None:
            said = f": {self._said(warnings[-1:])}" if warnings else ""
            raise DeliveryError(f"not a URL Apprise can send to{said}")
        # One message per event and a deployment's few events: Apprise's own pacing between messages to the
        # same service would only make the last ones late.
        plugin.socket_connect_timeout = self.timeout
        plugin.socket_read_timeout = self.timeout
        plugin.request_rate_per_sec = 0
        sender = apprise.Apprise(asset=asset)
        sender.add(plugin)
        return sender

    def _said(self, warnings: list[str]) -> str:
        """Apprise's words, without the URL (Apprise may quote it whole) or any other secret."""
        return mask(_reason(warnings).replace(self.url, redact(self.url)))

    def send(self, message: Message) -> None:
        """Send one message; DeliveryError saying why when the target does not take it."""
        import apprise

        if self._apprise is None:
            self._apprise = self._load()
        kinds = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
                 "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}
        with _apprise_warnings() as warnings:
            try:
                result = self._apprise.notify(body=message.body, title=message.title,
                                              notify_type=kinds.get(message.level, apprise.NotifyType.INFO),
                                              body_format=apprise.NotifyFormat.TEXT)
            except Exception as exc:
                raise DeliveryError(self._said([f"{type(exc).__name__}: {exc}"])) from exc
        try:
            if not result:
                raise DeliveryError(self._said(_result_warnings(result) or warnings))
        finally:
            close = getattr(result, "close", None)
            if callable(close):
                close()


def _result_warnings(result: Any) -> list[str]:
    """Apprise 2 hands back a result that carries its log (sent from its own worker threads): its warnings."""
    logs = getattr(result, "logs", None)
    if not callable(logs):
        return []  # Apprise 1 says True or False, and logs on the calling thread
    return [str(entry.message) for entry in logs()
            if str(getattr(entry, "level", "")).upper() in {"WARNING", "ERROR", "CRITICAL"}]


def _reason(warnings: list[str]) -> str:
    """The most telling of Apprise's warnings: the last ones name the cause (refused, timed out, HTTP 500)."""
    if not warnings:
        return "not delivered (Apprise gave no reason)"
    text = " ".join(" ".join(line.split()) for line in warnings[-2:])
    return text if len(text) <= 300 else text[:299] + "…"
