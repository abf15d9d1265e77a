"""Sign-in attempts limited per user name and per client address, in bounded memory.

Failed sign-ins are counted in a sliding window: after `PER_USER` failures for one name, or `PER_ADDRESS`
from one address, within `PERIOD` seconds, that name or address is refused (429, with Retry-After) until the
oldest failure leaves the window; a refused attempt checks no password (argon2 costs the server too). A
success clears its name's failures, not its address's. Each table keeps at most `KEYS` names or addresses,
forgetting the least recently seen first, so a flood of made-up names cannot fill the memory (the address
limit still holds it back). The counts live in this process: dashboards behind one proxy count apart.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request

from conveyor.config.models import WebSettings

PER_USER = 5
PER_ADDRESS = 20
PERIOD = 300.0
KEYS = 10_000


class Failures:
    """Failed attempts per key in the last `period` seconds, for at most `keys` keys."""

    def __init__(self, limit: int, period: float, keys: int, clock: Callable[[], float]) -> None:
        self.limit, self.period, self.keys, self.clock = limit, period, keys, clock
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it may now."""
        times = self.seen.get(key)
        if times is None:
            return None
        now = self.clock()
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) < self.limit:
            return None
        return times[0] + self.period - now

    def failed(self, key: str) -> None:
        """Count a failure of `key` (its oldest is dropped past `limit`: only the newest matter)."""
        times = self.seen.pop(key, None) or deque(maxlen=self.limit)
        times.append(self.clock())
        self.seen[key] = times  # the most recently seen, last
        while len(self.seen) > self.keys:
            self.seen.popitem(last=False)

    def clear(self, key: str) -> None:
        self.seen.pop(key, None)


class SignInLimits:
    """The dashboard's limits on failed sign-ins: per user name and per client address."""

    def __init__(self, *, per_user: int = PER_USER, per_address: int = PER_ADDRESS, period: float = PERIOD,
                 keys: int = KEYS, clock: Callable[[], float] = time.monotonic) -> None:
        self.users = Failures(per_user, period, keys, clock)
        self.addresses = Failures(per_address, period, keys, clock)

    def wait(self, user: str, address: str) -> float | None:
        """Seconds until this user name from this address may try to sign in again, or None."""
        waits = [w for w in (self.users.wait(user[:200]), self.addresses.wait(address)) if w is not None]
        return max(waits) if waits else None

    def failed(self, user: str, address: str) -> None:
        self.users.failed(user[:200])
        self.addresses.failed(address)

    def succeeded(self, user: str) -> None:
        self.users.clear(user[:200])


def client_address(request: Request, settings: WebSettings) -> str:
    """Who is asking: the peer's address, or, from a trusted proxy, the address it says it forwards for (the
    last of X-Forwarded-For: the one that proxy saw)."""
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded and settings.is_proxy(peer):
        return forwarded.split(",")[-1].strip()[:100] or peer
    return peer
