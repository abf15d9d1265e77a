"""The identity file is read once per transport, not once per connection, and read again when it changes."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.config.models import SSH_DEFAULTS
from conveyor.transport._asyncssh import asyncssh
from conveyor.transport.ssh import SSHTransport


def _transport() -> SSHTransport:
    return SSHTransport(lambda host: SSH_DEFAULTS)


def _write_key(path: Path, passphrase: str | None = None) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path), "pkcs8-pem" if passphrase else "openssh", passphrase=passphrase)
    return key


def test_the_key_is_read_once_and_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    first = _write_key(path)
    transport = _transport()
    keys = transport._client_keys(path)
    assert transport._client_keys(path) is keys  # the second connection reads nothing
    assert [k.public_data for k in keys] == [first.public_data]  # type: ignore[union-attr]
    second = _write_key(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a rewrite within the same tick
    again = transport._client_keys(path)
    assert [k.public_data for k in again] == [second.public_data]  # type: ignore[union-attr]


def test_a_certificate_beside_the_key_comes_with_it(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    key = _write_key(path)
    authority = asyncssh.generate_private_key("ssh-ed25519")
    certificate = authority.generate_user_certificate(key, "deploy", principals=["deploy"])
    certificate.write_certificate(str(path) + "-cert.pub")
    offered = [pair.algorithm for pair in _transport()._client_keys(path)]  # type: ignore[union-attr]
    assert offered == [pair.algorithm for pair in asyncssh.load_keypairs([str(path)])]  # as given the path
    assert b"ssh-ed25519-cert-v01@openssh.com" in offered


def test_a_key_that_cannot_be_read_ahead_is_given_as_its_path(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    _write_key(path, passphrase="secret")  # asyncssh asks for the passphrase when it connects, and says so
    assert _transport()._client_keys(path) == [str(path)]
    assert _transport()._client_keys(tmp_path / "missing") == [str(tmp_path / "missing")]
