"""The caller process: makes Conveyor's calls to the outside world (a message, an HTTP request), one at a time.

Run by `conveyor.notify.calls` as a script (`python -P _caller.py [apprise]`), never imported by Conveyor:
it needs nothing of Conveyor's, so it starts in a few tens of milliseconds, and imports Apprise at once when
its command line says so (a message target's caller), or on the first message. It says `{"ready": true}`
once it has, then reads one JSON request per line on stdin and writes one JSON answer per line on stdout.

Its parent kills it when a call outlives its deadline. Should the parent be gone, an alarm set for just
after that deadline ends it all the same, and the end of stdin ends it when it waits for work: nothing it
does outlives the time it was given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import sys
from collections.abc import Callable
from typing import Any

ANSWER_LIMIT = 1 << 20  # bytes of an HTTP answer kept: Grafana's and the Pushgateway's are a few hundred


class _Warnings(logging.Handler):
    """What Apprise logs at WARNING and above while a message is sent (from any of its threads)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a malformed log call inside Apprise must not hide the failure it was about
            self.lines.append(str(record.msg))


_WARNINGS = _Warnings()
_APPRISE: dict[str, Any] = {}  # URL -> the Apprise object that sends to it


def _apprise(url: str, timeout: float) -> Any:
    """The Apprise object for one URL, made on its first message; None when Apprise cannot send there."""
    import apprise

    if url in _APPRISE:
        return _APPRISE[url]
    # Apprise names its sender after the app: "Conveyor" in chat, in the mail's From.
    asset = apprise.AppriseAsset(app_id="Conveyor", app_desc="Conveyor deployments")
    plugin = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
    sender = None
    if plugin is not None:
        # One message per event and a deployment's few events: Apprise's own pacing between messages to the
        # same service would only make the last ones late.
        plugin.socket_connect_timeout = timeout
        plugin.socket_read_timeout = timeout
        plugin.request_rate_per_sec = 0
        sender = apprise.Apprise(asset=asset)
        sender.add(plugin)
    _APPRISE[url] = sender
    return sender


def send_message(request: dict[str, Any]) -> dict[str, Any]:
    """Send one message through Apprise: {"sent": bool, "warnings": [...]} ("usable": false for a URL Apprise
    does not know)."""
    import apprise

    logger = logging.getLogger("apprise")
    if _WARNINGS not in logger.handlers:
        logger.addHandler(_WARNINGS)
        logger.propagate = False
    _WARNINGS.lines = []
    sender = _apprise(request["url"], float(request["timeout"]))
    if sender is None:
        return {"usable": False, "sent": False, "warnings": _WARNINGS.lines}
    kinds = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
             "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}
    result = sender.notify(body=request["body"], title=request["title"],
                           notify_type=kinds.get(request["level"], apprise.NotifyType.INFO),
                           body_format=apprise.NotifyFormat.TEXT)
    try:
        return {"usable": True, "sent": bool(result), "warnings": _result_warnings(result) or _WARNINGS.lines}
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


def http_request(request: dict[str, Any]) -> dict[str, Any]:
    """One HTTP(S) request: {"status", "reason", "body"} for any answer, {"error"} when there was none."""
    import urllib.error
    import urllib.request

    url = str(request["url"])
    if not url.lower().startswith(("http://", "https://")):
        return {"error": "only http:// and https:// URLs are called"}
    body = request.get("body")
    call = urllib.request.Request(url, data=body.encode("utf-8") if body is not None else None,  # noqa: S310
                                  headers=request.get("headers") or {}, method=request["method"])
    try:
        with urllib.request.urlopen(call, timeout=float(request["timeout"])) as response:  # noqa: S310
            return {"status": int(response.status), "reason": str(response.reason),
                    "body": response.read(ANSWER_LIMIT).decode("utf-8", "replace")}
    except urllib.error.HTTPError as exc:
        with exc:
            said = exc.read(ANSWER_LIMIT).decode("utf-8", "replace") if exc.fp else ""
        return {"status": exc.code, "reason": str(exc.reason), "body": said}
    except urllib.error.URLError as exc:
        return {"error": str(exc.reason)}
    except TimeoutError:
        return {"error": "timed out"}
    except (OSError, ValueError) as exc:
        return {"error": str(exc) or type(exc).__name__}


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"message": send_message, "http": http_request}


def _load_apprise() -> None:
    """Import Apprise and its plugins (it reads them all on the first URL it is given: half a second more)."""
    import apprise

    apprise.Apprise.instantiate("json://localhost", suppress_exceptions=True)


PRELOAD: dict[str, Callable[[], None]] = {"apprise": _load_apprise}  # what the parent may ask for in advance


def main() -> None:
    """Load what the command line names, then answer requests until stdin ends."""
    for name in sys.argv[1:]:
        with contextlib.suppress(Exception):  # what failed is said by the first request that needs it
            PRELOAD[name]()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            # The parent kills us at the deadline; this is for when it cannot (it is gone).
            signal.alarm(math.ceil(float(request["timeout"])) + 1)
            answer = KINDS[request["kind"]](request)
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            signal.alarm(0)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
