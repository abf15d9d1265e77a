"""One Apprise URL as a notification target: Slack, email, Teams, a JSON webhook, ...

Apprise sends from a caller process of the target's own (calls.py), started (and loading Apprise) as the
target is set up for a deployment, and killed when a message outlives the target's timeout: `conveyor
--help` never loads Apprise, a deployment does not wait for it, and a target that keeps a connection open
cannot keep Conveyor running. Apprise
reports why a message failed only through `logging`; the caller process hands its warnings back, and the
last ones become the reason given to the user.
"""

from __future__ import annotations

from conveyor.notify.calls import CallerProcess, CallFailed, CallTimedOut, no_answer
from conveyor.notify.delivery import DeliveryError, redact
from conveyor.notify.message import Message
from conveyor.secrets import mask


class AppriseTarget:
    """Sends messages to one Apprise URL, each within `timeout` seconds once its sending process is ready."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._caller = CallerProcess(preload=("apprise",))
        self._caller.start()  # Apprise loads meanwhile, so that a message's time is the target's

    def _said(self, warnings: list[str]) -> str:
        """Apprise's words, without the URL (Apprise may quote it whole) or any other secret."""
        return mask(_reason(warnings).replace(self.url, redact(self.url)))

    def send(self, message: Message) -> None:
        """Send one message; DeliveryError saying why when the target does not take it in time."""
        try:
            answer = self._caller.message(self.url, title=message.title, body=message.body, level=message.level,
                                          timeout=self.timeout)
        except CallTimedOut:
            raise DeliveryError(no_answer(self.timeout)) from None
        except CallFailed as exc:
            raise DeliveryError(self._said([exc.why])) from None
        warnings = [str(line) for line in answer.get("warnings") or []]
        if "error" in answer:
            raise DeliveryError(self._said([str(answer["error"])]))
        if not answer.get("usable", True):
            said = f": {self._said(warnings[-1:])}" if warnings else ""
            raise DeliveryError(f"not a URL Apprise can send to{said}")
        if not answer.get("sent"):
            raise DeliveryError(self._said(warnings))

    def startup_left(self) -> float:
        """How long the sending process may still take to get ready (0 once it is)."""
        return self._caller.startup_left()

    def close(self) -> None:
        """End the caller process (a message still on its way is cut short)."""
        self._caller.close()


def _reason(warnings: list[str]) -> str:
    """The most telling of Apprise's warnings: the last ones name the cause (refused, timed out, HTTP 500)."""
    if not warnings:
        return "not delivered (Apprise gave no reason)"
    text = " ".join(" ".join(line.split()) for line in warnings[-2:])
    return text if len(text) <= 300 else text[:299] + "…"
