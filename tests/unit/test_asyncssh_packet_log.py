"""asyncssh's packet log costs nothing while it is off, and logs every packet as before when it is on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.transport._asyncssh import asyncssh


class _Names(dict[int, str]):
    """The packet names asyncssh looks up to describe a packet; counts the lookups."""

    looked_up = 0

    def __getitem__(self, key: int) -> str:
        type(self).looked_up += 1
        return super().__getitem__(key)


class _Handler(asyncssh.packet.SSHPacketLogger):
    _handler_names = _Names({94: "MSG_CHANNEL_DATA"})

    @property
    def logger(self) -> Any:
        return asyncssh.logging.logger.get_child("conn")


@pytest.fixture
def debug_level() -> Iterator[Any]:
    before = asyncssh.logging.SSHLogger._debug_level
    yield asyncssh.set_debug_level
    asyncssh.logging.SSHLogger._debug_level = before


def test_a_packet_is_not_even_described_while_packet_logging_is_off(debug_level: Any,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    debug_level(1)
    _Names.looked_up = 0
    with caplog.at_level(logging.DEBUG, logger="asyncssh"):
        for sequence in range(100):
            _Handler().log_sent_packet(94, sequence, b"x" * 32768)
    assert _Names.looked_up == 0
    assert not [r for r in caplog.records if "MSG_CHANNEL_DATA" in r.getMessage()]


def test_every_packet_is_logged_at_debug_level_3(debug_level: Any, caplog: pytest.LogCaptureFixture) -> None:
    debug_level(3)
    with caplog.at_level(logging.DEBUG, logger="asyncssh"):
        _Handler().log_sent_packet(94, 7, b"abcd")
        _Handler().log_received_packet(94, 8, b"ef")
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "[pktid=7] Sent MSG_CHANNEL_DATA (94), 4 bytes" in said, said
    assert "[pktid=8] Received MSG_CHANNEL_DATA (94), 2 bytes" in said, said


# As asyncssh is imported it looks for liboqs and nettle with ctypes.util.find_library; for a library it cannot
# find that runs ldconfig, gcc and ld. A fresh interpreter reports every process it starts (audit hook).
_IMPORT_AND_REPORT = """
import sys
started = []
sys.addaudithook(lambda event, args: started.append(str(args[1])) if event == "subprocess.Popen" else None)
import ctypes.util
before = ctypes.util.find_library
import conveyor.transport._asyncssh as wrapped
assert ctypes.util.find_library is before, "find_library is given back"
print(repr(started))
print(repr(wrapped.asyncssh.crypto.pq.mlkem_available))
"""


def test_importing_asyncssh_starts_no_process_to_look_for_libraries_conveyor_never_uses() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _IMPORT_AND_REPORT], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    started, mlkem = done.stdout.splitlines()
    assert started == "[]"  # no ldconfig, gcc or ld
    assert mlkem == "True"  # ML-KEM still comes from cryptography
