"""What Conveyor's asyncssh puts on the wire, against a real sshd (tests/sshfleet): no ignore packet before
each packet under an AEAD cipher (still one under any other), and the packets of one turn of the event loop in
one write; the bytes a host receives are the ones sent."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from conveyor.transport._asyncssh import asyncssh  # noqa: E402
from sshfleet import Fleet, missing_requirements  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_requirements()),
                       reason=f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)"),
]

PAYLOAD = os.urandom(1 << 20)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("wirefleet"), 1, fast_crypto=False) as started:  # every cipher
        yield started


@pytest.fixture
def packet_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    before = asyncssh.logging.SSHLogger._debug_level
    asyncssh.set_debug_level(3)
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncssh"):
            yield caplog
    finally:
        asyncssh.logging.SSHLogger._debug_level = before


def send(fleet: Fleet, cipher: str) -> tuple[str, int]:
    """Stream PAYLOAD into `sha256sum` on the host over one connection with `cipher`: what the host summed,
    and how many writes reached the connection's socket transport once it was open."""

    async def run() -> tuple[str, int]:
        (host,) = fleet.hosts
        conn = await asyncssh.connect("127.0.0.1", port=host.port, username="root",
                                      client_keys=[str(fleet.client_key)], known_hosts=str(fleet.known_hosts),
                                      encryption_algs=[cipher])
        transport: Any = conn._transport
        writes = 0
        write = transport.write

        def counted(data: bytes) -> None:
            nonlocal writes
            writes += 1
            write(data)

        transport.write = counted
        try:
            process = await conn.create_process("sha256sum", encoding=None)
            for at in range(0, len(PAYLOAD), 256 * 1024):
                process.stdin.write(PAYLOAD[at:at + 256 * 1024])
                await process.stdin.drain()
            process.stdin.write_eof()
            out = await process.stdout.read()
            await process.wait_closed()
            return out.decode().split()[0], writes
        finally:
            conn.close()
            await conn.wait_closed()

    return asyncio.run(run())


def sent(log: pytest.LogCaptureFixture, name: str) -> int:
    return sum(1 for r in log.records if f"Sent {name} " in r.getMessage())


@pytest.mark.parametrize("cipher", ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"])
def test_under_aead_no_ignore_packets_and_one_write_per_turn(fleet: Fleet, packet_log: pytest.LogCaptureFixture,
                                                            cipher: str) -> None:
    summed, writes = send(fleet, cipher)
    assert summed == hashlib.sha256(PAYLOAD).hexdigest()
    data = sent(packet_log, "MSG_CHANNEL_DATA")
    assert data >= len(PAYLOAD) // 32768
    assert sent(packet_log, "MSG_IGNORE") == 0
    # Without the batching every packet is a write of its own.
    assert writes * 4 <= data, (writes, data)


def test_other_ciphers_keep_their_ignore_packets(fleet: Fleet, packet_log: pytest.LogCaptureFixture) -> None:
    summed, _ = send(fleet, "aes128-ctr")
    assert summed == hashlib.sha256(PAYLOAD).hexdigest()
    assert sent(packet_log, "MSG_IGNORE") >= sent(packet_log, "MSG_CHANNEL_DATA") > 0
