"""Channel packets under AES-GCM, built by Conveyor's shorter path, are byte for byte the ones asyncssh's own
send_packet writes; every other case still goes through asyncssh's code."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conveyor.transport._asyncssh import asyncssh

KEY = bytes(range(16))
NONCE = bytes(range(100, 112))
CHANNEL_DATA, CHANNEL_EOF, WINDOW_ADJUST, SERVICE_REQUEST = 94, 96, 93, 5


class _Channel:
    """What a channel gives the connection: its logger (for the packet log's level) and its packet log."""

    logger = asyncssh.logging.logger.get_child("chan")

    def log_sent_packet(self, pkttype: int, pktid: int | None, packet: bytes, note: str = "") -> None:
        """The packet log, off."""


class _Logged(_Channel):
    """A handler that notes the packets asyncssh's own send_packet hands to its packet log (ours never does)."""

    def __init__(self) -> None:
        self.logged: list[int] = []

    def log_sent_packet(self, pkttype: int, pktid: int | None, packet: bytes, note: str = "") -> None:
        self.logged.append(pkttype)


def _connection(cipher: bytes = b"aes128-gcm@openssh.com", *, seq: int = 41) -> Any:
    """An SSHClientConnection past its key exchange and login, with a known key and nonce, writing into a list
    (only the fields send_packet reads are set; its socket writes are caught where asyncssh makes them)."""
    from asyncssh import encryption

    conn = object.__new__(asyncssh.connection.SSHClientConnection)
    key = KEY if b"aes" in cipher else bytes(range(64))
    conn._send_encryption = encryption.get_encryption(cipher, key, NONCE)
    conn._compressor = None
    conn._kex_complete = conn._auth_complete = True
    conn._auth_in_progress = False
    conn._rekey_bytes, conn._rekey_bytes_sent = 1 << 30, 1000
    conn._rekey_seconds, conn._rekey_time = 3600, time.monotonic() + 3600
    conn._send_seq = seq
    conn._send_enchdrlen, conn._send_blocksize = 1, 16  # AEAD: only the padding length is encrypted up front
    conn._logger = asyncssh.logging.logger.get_child("conn")
    conn._deferred_packets = []
    conn.wire = []
    conn._send = conn.wire.append
    return conn


@pytest.fixture
def fixed_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The random padding, made the same for both paths."""
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(200, 200 + n)))


@pytest.fixture
def debug_level() -> Iterator[Any]:
    before = asyncssh.logging.SSHLogger._debug_level
    yield asyncssh.set_debug_level
    asyncssh.logging.SSHLogger._debug_level = before


def _asyncssh_send_packet() -> Any:
    patched = asyncssh.connection.SSHConnection.send_packet
    assert getattr(patched, "conveyor_fast_gcm", False), "the shorter path is not in place"
    return patched.asyncssh_send_packet


PACKETS = [
    (CHANNEL_DATA, [(0).to_bytes(4, "big"), (0).to_bytes(4, "big")]),
    *[(CHANNEL_DATA, [(3).to_bytes(4, "big"), len(body).to_bytes(4, "big"), body])
      for body in (b"x", b"y" * 15, b"z" * 16, b"w" * 17, os.urandom(32768), bytes(range(256)) * 100)],
    (WINDOW_ADJUST, [(3).to_bytes(4, "big"), (1 << 21).to_bytes(4, "big")]),
    (CHANNEL_EOF, [(3).to_bytes(4, "big")]),
]


def test_the_bytes_on_the_wire_are_asyncssh_s_own(fixed_padding: None, debug_level: Any) -> None:
    debug_level(1)
    ours, theirs = _connection(), _connection()
    ours_logged, theirs_logged = _Logged(), _Logged()
    original = _asyncssh_send_packet()
    for pkttype, fields in PACKETS:
        ours.send_packet(pkttype, *fields, handler=ours_logged)
        original(theirs, pkttype, *fields, handler=theirs_logged)
    assert ours_logged.logged == []
    assert theirs_logged.logged == [pkttype for pkttype, _ in PACKETS]
    assert b"".join(ours.wire) == b"".join(theirs.wire)
    assert (ours._send_seq, ours._rekey_bytes_sent) == (theirs._send_seq, theirs._rekey_bytes_sent)
    assert ours._send_seq == 41 + len(PACKETS)
    assert ours._send_encryption._cipher._iv == theirs._send_encryption._cipher._iv != NONCE


def test_what_is_sent_opens_with_the_key_and_says_what_was_given(debug_level: Any) -> None:
    debug_level(1)
    conn = _connection()
    body = os.urandom(40000)
    fields = [(7).to_bytes(4, "big"), len(body).to_bytes(4, "big"), body]
    conn.send_packet(CHANNEL_DATA, *fields)
    wire = b"".join(conn.wire)
    length = int.from_bytes(wire[:4], "big")
    assert len(wire) == 4 + length + 16
    assert length % 16 == 0
    plain = AESGCM(KEY).decrypt(NONCE, wire[4:], wire[:4])
    padding = plain[0]
    assert 4 <= padding < 4 + 16
    assert plain[1:-padding] == bytes([CHANNEL_DATA]) + b"".join(fields)


def test_a_channel_gives_its_fields_unjoined_and_nothing_once_closed(debug_level: Any) -> None:
    debug_level(1)
    sent: list[tuple[int, tuple[bytes, ...], Any]] = []

    class _Conn:
        def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
            sent.append((pkttype, args, handler))

    channel = object.__new__(asyncssh.channel.SSHChannel)
    channel._conn, channel._send_chan = _Conn(), 9
    channel.send_packet(CHANNEL_DATA, b"\0\0\0\2ab")
    assert sent == [(CHANNEL_DATA, ((9).to_bytes(4, "big"), b"\0\0\0\2ab"), channel)]
    channel._send_chan = None
    channel.send_packet(CHANNEL_EOF)
    assert len(sent) == 1


@pytest.mark.parametrize("case", ["chacha", "rekey due", "packet log on", "transport message"])
def test_everything_else_goes_through_asyncssh(case: str, fixed_padding: None, debug_level: Any) -> None:
    debug_level(3 if case == "packet log on" else 1)
    conn = _connection(b"chacha20-poly1305@openssh.com" if case == "chacha" else b"aes128-gcm@openssh.com")
    rekeys: list[bool] = []
    conn._send_kexinit = lambda: rekeys.append(True)  # a rekey starts here; its key exchange is not tested here
    if case == "rekey due":
        conn._rekey_bytes_sent = conn._rekey_bytes
    handler = _Logged()
    pkttype = SERVICE_REQUEST if case == "transport message" else CHANNEL_DATA
    conn.send_packet(pkttype, (1).to_bytes(4, "big"), (1).to_bytes(4, "big"), b"a", handler=handler)
    assert handler.logged == [pkttype]
    assert conn.wire
    assert rekeys == ([True] if case == "rekey due" else [])


def test_before_login_a_channel_packet_waits_as_asyncssh_makes_it(debug_level: Any) -> None:
    debug_level(1)
    conn = _connection()
    conn._auth_complete = False
    conn.send_packet(CHANNEL_DATA, (1).to_bytes(4, "big"), b"\0\0\0\1a", handler=_Logged())
    assert conn.wire == []
    assert conn._deferred_packets == [(CHANNEL_DATA, ((1).to_bytes(4, "big"), b"\0\0\0\1a"))]
