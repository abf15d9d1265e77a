"""Host-script exit codes, named once: the controller compares with these names, and the scripts use the
same names, as shell variables (`fail "$EXIT_CHECKSUM_MISMATCH" ...`).

The scripts run from text sent over a connection, so they cannot source a file on the host: common.sh, the
prelude of every script, carries the shell assignments written by `shell_names()`, and a unit test fails
when they are not exactly that. After changing the table, paste the output of `python -m conveyor.engine.exits`
over the block in common.sh. The numbers are part of what users see (docs/security.md): keep them.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["SEND_WHOLE", "HostExit", "shell_names"]


class HostExit(IntEnum):
    """Why a host script failed, by its exit code (any other code is a command's own: a restart, a check)."""

    BAD_ARGUMENT = 2          # an argument the script cannot take (an unknown compression)
    CHECKSUM_MISMATCH = 10    # the tarball's sha256 is not the one the controller sent
    UNPACK_FAILED = 11        # the tarball does not unpack
    BASE_MISSING = 12         # a delta's base release, or a shared path it relies on, is not on the host
    NO_HARD_LINKS = 13        # the host cannot hard-link the base release (cp -al)
    TOOL_MISSING = 14         # a tool the step needs is not installed
    EXPECTATION_UNMET = 15    # the host is not what the state store said (runs another release): nothing changed
    DOWNLOAD_FAILED = 16      # the store or the network refused the download
    NO_DOWNLOADER = 17        # neither curl nor wget is installed
    SHARED_PATH_UNSAFE = 18   # shared paths overlap, or one lies under a link
    RELEASE_REFUSED = 19      # the release holds what no release may (setuid, a device, a link that leaves it)
    RELEASE_MISSING = 20      # the release to switch to is not on the host
    CANNOT_WRITE = 21         # the host cannot write: no space, a quota, a read-only file system, permission


# A delta the host cannot build: the controller sends the whole release instead.
SEND_WHOLE = frozenset({HostExit.BASE_MISSING, HostExit.NO_HARD_LINKS})


def shell_names() -> str:
    """The table as shell assignments, one a line (`EXIT_CHECKSUM_MISMATCH=10`): the block in common.sh."""
    return "".join(f"EXIT_{code.name}={code.value}\n" for code in HostExit)


if __name__ == "__main__":
    print(shell_names(), end="")
