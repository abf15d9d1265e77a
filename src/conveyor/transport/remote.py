"""What both SSH clients share (asyncssh in ssh.py, the OpenSSH client in openssh.py), with neither imported:
where a host is, the fast algorithms, how a timed-out host script is stopped and how a refused host key is
explained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import TransportError
from conveyor.transport.base import Completed

# The process ids a host script prints first (common.sh), for stopping it after a timeout.
_PID = re.compile(r"^@@conveyor pid=(\d+) (\d+)$", re.MULTILINE)
STOP_TIMEOUT = 5.0
# Fast and secure: curve25519 and AES-GCM are what OpenSSH itself prefers on most hardware, and they cost
# far less CPU per connection than the post-quantum hybrid that OpenSSH 9 negotiates by default.
FAST_KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256")
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect."""

    host: str
    port: int
    user: str | None


def parse_endpoint(text: str, default_port: int = 22) -> Endpoint:
    """`[user@]host[:port]` (IPv6 in brackets) as an Endpoint."""
    user, _, rest = text.rpartition("@")
    host, port = rest, default_port
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        if not port_text.isdigit():
            raise TransportError(f"{text}: the port must be a number")
        port = int(port_text)
    return Endpoint(host, port, user or None)


def stop_script(said: str) -> str | None:
    """The command line that stops what a timed-out host script left running, from what it printed (None when
    it never said its process ids): its process group, which is the script's own shell when the session's
    shell exec'd it, else the session's shell. Closing the session does not stop it: OpenSSH's server ignores
    signal requests, and a command without a terminal outlives its client."""
    found = _PID.search(said)
    if found is None:
        return None
    pid, ppid = found.group(1), found.group(2)
    # `kill -SIGNAL -PGID`, without `--`: dash's kill (Debian's sh, which runs this under OpenSSH) has none.
    return (f"if kill -0 -{pid} 2>/dev/null; then g={pid}; else g={ppid}; fi; "
            'kill -TERM "-$g" 2>/dev/null || exit 0; sleep 1; kill -KILL "-$g" 2>/dev/null; exit 0')


def refusal(verdict: str, known_file: Path, detail: str) -> str:
    """Why a host's key was refused, in a user's words."""
    if verdict == "changed":
        return f"its host key has CHANGED since it was recorded in {known_file}"
    if verdict == "revoked":
        return f"its host key is marked @revoked in {known_file}"
    if verdict == "certified":
        return (f"{known_file} trusts a certificate authority for it (@cert-authority), and it showed no host "
                "certificate that authority signed")
    if verdict == "unknown":
        return f"its host key is not in {known_file} (add it, or set ssh.known_hosts: accept-new)"
    return f"its host key was not accepted: {detail}"


def told(output: bytes | bytearray, note: str) -> str:
    """What a host printed, then a note of ours on a line of its own."""
    text = output.decode("utf-8", "replace")
    if text and not text.endswith("\n"):
        text += "\n"
    return text + note


def timed_out(host: str, output: bytes | bytearray, timeout: float | None, stopped: str) -> Completed:
    """A command that ran out of time: what the host printed until then, and that it timed out."""
    return Completed(exit_code=124, output=told(output, f"{host}: timed out after {timeout:g}s{stopped}"),
                     timed_out=True)
