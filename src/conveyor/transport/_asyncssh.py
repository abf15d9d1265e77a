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
same but the ignore ones. And once the keys are settled, a channel packet under AES-GCM is built with one
copy of its data instead of seven, by one AESGCM per key instead of one per packet; the bytes are the ones
asyncssh would send (a test compares them). A release sent to 100 hosts: the controller's CPU 4.5 -> 3.8 s.

As it is imported, asyncssh looks for liboqs and nettle with ctypes.util.find_library, which runs `ldconfig`,
`gcc` and `ld` for a library it cannot find: 60-70 ms of CPU on every start, for algorithms Conveyor never
negotiates. They are said to be absent while it imports (see NOT_LOOKED_FOR).
"""

from __future__ import annotations

import ctypes.util
import os
import time
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
    import asyncssh.channel
    import asyncssh.connection
    import asyncssh.packet

MSG_IGNORE = 2
FIRST_CHANNEL_LAYER_MESSAGE = 80  # SSH_MSG_GLOBAL_REQUEST: RFC 4250's connection protocol numbers start here
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


def _aes_gcm_packets_built_once() -> None:
    """Channel packets under AES-GCM, once the keys are settled, are built with one copy of their payload
    instead of seven, and sealed by one AESGCM per key instead of one per packet (the cipher's key and nonce
    are the ones asyncssh holds, its nonce advanced by its own method). The bytes on the wire are the ones
    asyncssh's send_packet writes: tests/unit/test_asyncssh_fast_gcm.py compares them. Any other packet, any
    other cipher, compression, a rekey due, or the packet log on, goes through asyncssh's own code."""
    from asyncssh import encryption

    connection_class = getattr(asyncssh.connection, "SSHConnection", None)
    gcm_class = getattr(encryption, "GCMEncryption", None)
    original = getattr(connection_class, "send_packet", None)
    if connection_class is None or gcm_class is None or original is None or getattr(
            original, "conveyor_fast_gcm", False):
        return
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def send_packet(self: Any, pkttype: int, *args: bytes, handler: Any = None) -> None:
        enc: Any = self._send_encryption
        if (pkttype < FIRST_CHANNEL_LAYER_MESSAGE or type(enc) is not gcm_class or self._compressor
                or not (self._kex_complete and self._auth_complete)
                or self._rekey_bytes_sent >= self._rekey_bytes
                or (self._rekey_seconds and time.monotonic() >= self._rekey_time)
                or getattr((handler or self).logger, "_debug_level", PACKET_LOG_LEVEL) >= PACKET_LOG_LEVEL):
            original(self, pkttype, *args, handler=handler)
            return
        cipher = enc._cipher
        aead = cipher.__dict__.get("_conveyor_aead")
        if aead is None or aead[0] is not cipher._key:
            aead = cipher._conveyor_aead = (cipher._key, AESGCM(cipher._key))
        length = 1 + sum(map(len, args))
        padlen = -(self._send_enchdrlen + length) % self._send_blocksize
        if padlen < 4:
            padlen += self._send_blocksize
        header = (1 + length + padlen).to_bytes(4, "big")
        sealed = aead[1].encrypt(cipher._iv, b"".join((bytes((padlen, pkttype)), *args, os.urandom(padlen))),
                                 header)
        cipher._update_iv()
        self._send(header)
        self._send(sealed)
        self._send_seq = (self._send_seq + 1) & 0xFFFFFFFF
        self._rekey_bytes_sent += 1 + length + padlen

    send_packet.conveyor_fast_gcm = True  # type: ignore[attr-defined]
    send_packet.asyncssh_send_packet = original  # type: ignore[attr-defined]
    connection_class.send_packet = send_packet

    channel_class = getattr(asyncssh.channel, "SSHChannel", None)
    channel_send = getattr(channel_class, "send_packet", None)
    if channel_class is None or channel_send is None:
        return

    def send_on_channel(self: Any, pkttype: int, *args: bytes) -> None:
        # The channel's number and the message's fields go to the connection as they are, to be joined once.
        if self._send_chan is not None:
            self._conn.send_packet(pkttype, self._send_chan.to_bytes(4, "big"), *args, handler=self)

    send_on_channel.conveyor_fast_gcm = True  # type: ignore[attr-defined]
    channel_class.send_packet = send_on_channel


_no_ignore_packets_under_aead()
_one_write_per_turn()
_aes_gcm_packets_built_once()

__all__ = ["asyncssh"]
