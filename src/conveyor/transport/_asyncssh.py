"""asyncssh, imported once with one known third-party warning silenced, and its packet logging made free
when it is off.

cryptography 47 and later deprecate DSA and warn when asyncssh (which still offers ssh-dss keys) imports its
DSA support. Conveyor never offers or accepts DSA keys (OpenSSH dropped them in 9.8), so the warning says
nothing to our users; it would print on every `conveyor` start and, under the test suite's warnings-as-errors,
fail collection. Only that warning, from that import, is silenced: any other warning still shows.

asyncssh names and sizes every SSH packet it sends or receives for its packet log before asking the logger
whether packet logging (debug level 3) is on; for a release sent to many hosts that is tens of thousands
of discarded messages, about a tenth of the controller's CPU. The same check is made first here, and
nothing else changes: with `asyncssh.set_debug_level(3)` every packet is logged as before.
"""

from __future__ import annotations

import warnings
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"DSA is deprecated", category=CryptographyDeprecationWarning)
    import asyncssh
    import asyncssh.packet

PACKET_LOG_LEVEL = 3  # asyncssh's debug level at which it logs packets


def _log_packets_only_when_asked() -> None:
    logger_class = getattr(asyncssh.packet, "SSHPacketLogger", None)
    original = getattr(logger_class, "_log_packet", None)
    if logger_class is None or original is None or getattr(original, "conveyor_guarded", False):
        return  # another asyncssh than the one this was written for: leave it as it is

    def _log_packet(self: Any, *args: Any) -> None:
        if getattr(self.logger, "_debug_level", PACKET_LOG_LEVEL) >= PACKET_LOG_LEVEL:
            original(self, *args)

    _log_packet.conveyor_guarded = True  # type: ignore[attr-defined]
    logger_class._log_packet = _log_packet


_log_packets_only_when_asked()

__all__ = ["asyncssh"]
