"""How the SSH transport reads known_hosts: a host is known by its name or its address, with OpenSSH's port
forms, through host keys, hashed entries and certificate authorities; a revoked key is never trusted."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from conveyor.transport._asyncssh import asyncssh
from conveyor.transport.ssh import KnownHosts, host_key_verdict


def public(key: asyncssh.SSHKey) -> str:
    """`type base64`, as a known_hosts line holds a key."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


K1, K2, CA = (asyncssh.generate_private_key("ssh-ed25519").convert_to_public() for _ in range(3))


def hashed(name: str) -> str:
    """A name as `ssh-keygen -H` writes it."""
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


CASES = [
    # (known_hosts lines, host, addr, port, key shown, verdict)
    ([f"[10.0.0.5]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K2, "changed"),
    ([f"[10.0.0.5]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K1, "trusted"),
    ([f"[web-1]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K2, "changed"),
    ([f"10.0.0.5 {public(K1)}"], "web-1", "10.0.0.5", 22, K2, "changed"),
    ([f"10.0.0.5 {public(K1)}"], "web-1", "10.0.0.5", 22, K1, "trusted"),
    # asyncssh trusts a key recorded without a port for any port: so it is known there too
    ([f"10.0.0.5 {public(K1)}"], "web-1", "10.0.0.5", 2222, K2, "changed"),
    ([f"[10.0.0.5]:2222 {public(K1)}"], "web-1", "10.0.0.5", 22, K2, "unknown"),
    ([f"[10.0.0.6]:2222 {public(K1)}", f"[web-2]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K2, "unknown"),
    ([f"{hashed('[10.0.0.5]:2222')} {public(K1)}"], "web-1", "10.0.0.5", 2222, K2, "changed"),
    ([f"{hashed('[10.0.0.5]:2222')} {public(K1)}"], "web-1", "10.0.0.5", 2222, K1, "trusted"),
    ([f"{hashed('web-1')} {public(K1)}"], "web-1", "10.0.0.5", 22, K2, "changed"),
    ([f"@cert-authority [10.0.0.5]:2222 {public(CA)}"], "web-1", "10.0.0.5", 2222, K2, "certified"),
    ([f"@cert-authority *.example.com {public(CA)}"], "web-1.example.com", "10.0.0.5", 22, K2, "certified"),
    ([f"@cert-authority 10.0.0.0/24 {public(CA)}"], "web-1", "10.0.0.5", 22, K2, "certified"),
    ([f"@revoked * {public(K1)}", f"[web-1]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K1, "revoked"),
    # revoked for the port, trusted without it: asyncssh's second lookup alone would forget the revocation
    ([f"@revoked [10.0.0.5]:2222 {public(K1)}", f"10.0.0.5 {public(K1)}"], "web-1", "10.0.0.5", 2222, K1,
     "revoked"),
    ([f"@revoked [10.0.0.5]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K1, "revoked"),
    ([f"@revoked 10.0.0.5 {public(K1)}", f"[web-1]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K1, "revoked"),
    ([f"@revoked [10.0.0.5]:2222 {public(K1)}"], "web-1", "10.0.0.5", 2222, K2, "unknown"),
]


@pytest.mark.parametrize(("lines", "host", "addr", "port", "key", "verdict"), CASES)
def test_what_known_hosts_says_of_a_host(lines: list[str], host: str, addr: str, port: int, key: asyncssh.SSHKey,
                                         verdict: str) -> None:
    known = KnownHosts("".join(f"{line}\n" for line in lines))
    assert host_key_verdict(known, host, addr, port, key) == verdict


def test_a_revoked_key_is_never_handed_to_asyncssh_as_trusted() -> None:
    known = KnownHosts(f"@revoked [10.0.0.5]:2222 {public(K1)}\n10.0.0.5 {public(K1)}\n10.0.0.5 {public(K2)}\n")
    trusted, authorities, revoked = known.match("web-1", "10.0.0.5", 2222)[:3]
    assert (trusted, authorities, revoked) == ([K2], [], [K1])


def test_no_file_knows_no_host() -> None:
    assert host_key_verdict(None, "web-1", "10.0.0.5", 22, K1) == "unknown"
