"""Sending without stalling the engine: one thread per target, a bounded wait, failures reported once.

The engine emits events from its event loop; a subscriber that waited there for Slack to answer would hold
up every host. So each target gets a `Courier`: a daemon thread that sends what it is handed, in order
(a Grafana annotation is created before it is closed). Each send ends within the target's timeout (the
process making it is killed then: calls.py), and when the deployment ends, the notifier waits for its
couriers, at most the target's timeout per message still on its way.

A target that fails is reported once per deployment, by `Failures.flush` on the caller's thread: a warning
line on stderr and a `notify_failed` event in the state store. Nothing here ever raises into the engine.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.secrets import mask
from conveyor.values import format_duration

if TYPE_CHECKING:
    from conveyor.state.store import Store

Job = Callable[[], None]


class DeliveryError(Exception):
    """A target did not take a message; `why` is said to a person (already free of secrets)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>[^?#]*)")
_HOST = re.compile(r"^(?:localhost|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?::\d+)?$")


def redact(url: str) -> str:
    """A URL as shown in messages: the scheme, the user and the host; never a password, path or query.

    Tokens hide in every part of an Apprise URL (`slack://TOKEN/TOKEN/TOKEN`, `json://user:pass@host/...`,
    `...?key=...`), so only what is plainly a host name or an address is shown, and `…` stands for the rest.
    """
    match = _URL.match(url)
    if match is None:
        return "(an unreadable URL)"
    rest = match.group("rest")
    authority, slash, path = rest.partition("/")
    user, at, host = authority.rpartition("@")
    shown = f"{match.group('scheme')}://"
    if at:
        name, _, _password = user.partition(":")
        shown += (f"{name}:…@" if _password else f"{name}@") if re.fullmatch(r"[\w.+-]+", name) else "…@"
    if _HOST.match(host):
        shown += host + ("/…" if slash and path else "")
    else:
        shown += "…"
    return mask(shown)


class Failures:
    """Targets that failed during one deployment: each reported once, on the thread that flushes."""

    def __init__(self, store: Callable[[], Store] | None, user: str, environment: str) -> None:
        self._store = store
        self.user = user
        self.environment = environment
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str, str | None]] = []
        self._seen: set[str] = set()
        self.reported: list[tuple[str, str]] = []

    def add(self, target: str, why: str, event: str | None = None) -> None:
        """Note a target's failure (from any thread); a target already noted is not noted again."""
        with self._lock:
            if target in self._seen:
                return
            self._seen.add(target)
            self._pending.append((target, mask(why), event))

    def flush(self, deployment_id: int | None) -> None:
        """Report what was noted since the last flush: a warning line each, and a state event each."""
        with self._lock:
            pending, self._pending = self._pending, []
        for target, why, event in pending:
            self.reported.append((target, why))
            print(f"conveyor: warning: notify {target}: {why}", file=sys.stderr, flush=True)
            if self._store is None:
                continue
            try:
                self._store().add_event("notify_failed", self.user, environment=self.environment,
                                        deployment_id=deployment_id, target=target, error=why, event=event)
            except Exception as exc:  # the state store failing is reported by the deployment itself
                print(f"conveyor: warning: notify {target}: not recorded in the state store: {exc}",
                      file=sys.stderr, flush=True)


class Courier:
    """Runs one target's jobs in order on its own daemon thread; a job that raises is that target's failure.

    `grace`, when given, says how much longer than `timeout` the next job may take for now (the sender's
    process still starting, say): waiting for the jobs allows for it.
    """

    def __init__(self, target: str, timeout: float, failures: Failures,
                 grace: Callable[[], float] | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self.failures = failures
        self.grace = grace
        self._jobs: deque[tuple[Job, str | None]] = deque()
        self._busy = 0  # jobs handed over and not finished yet
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def post(self, job: Job, event: str | None = None) -> None:
        """Hand over a job; it runs after every job handed over before it."""
        with self._changed:
            self._jobs.append((job, event))
            self._busy += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"conveyor-notify {self.target}",
                                                daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._jobs:
                    self._changed.wait()
                job, event = self._jobs.popleft()
            try:
                job()
            except DeliveryError as exc:
                self.failures.add(self.target, exc.why, event)
            except Exception as exc:
                self.failures.add(self.target, f"{type(exc).__name__}: {exc}", event)
            finally:
                with self._changed:
                    self._busy -= 1
                    self._changed.notify_all()

    def deadline(self) -> float:
        """When waiting for the jobs handed over so far stops: `timeout` for each one left, from now (and the
        grace, if any)."""
        with self._changed:
            busy = self._busy
        extra = self.grace() if self.grace is not None and busy else 0.0
        return time.monotonic() + self.timeout * busy + extra + 0.5

    def drain(self, deadline: float | None = None) -> bool:
        """Wait for the jobs handed over so far, until `deadline` (see `deadline()`); False if some are not
        done by then (they are abandoned, and the target is reported as not answering)."""
        deadline = self.deadline() if deadline is None else deadline
        with self._changed:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.failures.add(self.target, f"no answer within {format_duration(self.timeout)}; "
                                      "gave up waiting")
                    return False
                self._changed.wait(left)
        return True
