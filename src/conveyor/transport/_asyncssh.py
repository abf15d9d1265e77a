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

asyncssh also puts an empty SSH_MSG_IGNORE before every packet it encrypts, and writes each packet to the
socket on its own. The ignore packet guards CBC mode, where the next packet's IV is the last block an observer
already saw; under the AEAD ciphers Conveyor negotiates (AES-GCM, ChaCha20-Poly1305) each packet's nonce comes
from its sequence number, and OpenSSH sends none there either. So under AEAD it is not sent (with any other
cipher it still is), and the packets one turn of the event loop produces go to the socket in one write. A
release sent to 100 hosts (bench/fanout.py): the controller's CPU 5.1 -> 4.0 s, the packets on the wire the
same but the ignore ones.

As it is imported, asyncssh looks for liboqs and nettle with ctypes.util.find_library, which runs `ldconfig`,
`gcc` and `ld` for a library it cannot find: 60-70 ms of CPU on every start, for algorithms Conveyor never
negotiates. They are said to be absent while it imports (see NOT_LOOKED_FOR).
"""

from __future__ import annotations

import ctypes.util
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning

# Shared libraries asyncssh looks for as it is imported, and what it would use them for.
NOT_LOOKED_FOR = {"oqs": "sntrup761 and ML-KEM key exchange (liboqs)", "liboqs": "the same",
                  "nettle": "UMAC MACs", "libnettle": "the same", "libnettle-6": "the same"}


@contextmanager
def _optional_libraries_not_looked_for() -> Iterator[None]:
    """While asyncssh is imported, ctypes.util.find_library says the libraries of NOT_LOOKED_FOR are absent.

    Looking for a library it cannot find, ctypes asks `ldconfig`, then compiles a probe with `gcc`, then asks
    `ld`: 60-70 ms of CPU on every `conveyor` start on a machine with a compiler, for algorithms Conveyor never
    offers (its key exchanges are curve25519 and NIST P-256, its ciphers AEAD, which need no MAC; see
    remote.py). ML-KEM still comes from cryptography when asked for. Any other library is looked for as ever.
    """
    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return None if name in NOT_LOOKED_FOR else original(name)

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = original


with warnings.catch_warnings(), _optional_libraries_not_looked_for():
    warnings.filterwarnings("ignore", message=r"DSA is deprecated", category=CryptographyDeprecationWarning)
    import asyncssh
    import asyncssh.connection
    import asyncssh.packet

MSG_IGNORE = 2
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


def _no_ignore_packets_under_aead() -> None:
    from asyncssh import encryption

    connection_class = getattr(asyncssh.connection, "SSHConnection", None)
    original = getattr(connection_class, "send_packet", None)
    aead = tuple(getattr(encryption, name) for name in ("GCMEncryption", "ChachaEncryption")
                 if hasattr(encryption, name))
    if connection_class is None or original is None or not aead or getattr(original, "conveyor_guarded", False):
        return
    empty = b"\0\0\0\0"  # an SSH string of no bytes: the ignore packet asyncssh puts before each packet

    def send_packet(self: Any, pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == MSG_IGNORE and args == (empty,) and isinstance(self._send_encryption, aead):
            return
        original(self, pkttype, *args, **kwargs)

    send_packet.conveyor_guarded = True  # type: ignore[attr-defined]
    connection_class.send_packet = send_packet


def _one_write_per_turn() -> None:
    connection_class = getattr(asyncssh.connection, "SSHConnection", None)
    original = getattr(connection_class, "_send", None)
    if connection_class is None or original is None or getattr(original, "conveyor_guarded", False):
        return

    def flush(self: Any, transport: Any) -> None:
        pending, self._conveyor_pending = self._conveyor_pending, None
        if pending and not transport.is_closing():
            transport.write(b"".join(pending))

    def _send(self: Any, data: bytes) -> None:
        pending = getattr(self, "_conveyor_pending", None)
        if pending is not None:
            pending.append(data)
            return
        transport = self._transport
        if not transport:
            return
        # Written at the end of this turn of the loop, before anything scheduled after it (a close's abort).
        self._conveyor_pending = [data]
        self._loop.call_soon(flush, self, transport)

    _send.conveyor_guarded = True  # type: ignore[attr-defined]
    connection_class._send = _send


_no_ignore_packets_under_aead()
_one_write_per_turn()

__all__ = ["asyncssh"]
