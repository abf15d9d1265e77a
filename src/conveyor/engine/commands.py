"""Host commands as data: each phase is one `sh -c SCRIPT NAME MARK ARGS...` line, every argument quoted.

Nothing here does I/O; the transports run what these functions return, and tests compare the strings.

MARK is a fresh random word signed with a key that never leaves this process: a script prefixes its step
markers with it (`@@conveyor MARK step=switch`), and the controller believes a marker only when its mark is
one it signed (see probe.py). Nothing a host prints can forge a step, a `current`, a release.
"""

from __future__ import annotations

import hmac
import re
import secrets
import shlex
from collections.abc import Sequence
from functools import cache, lru_cache
from importlib import resources

from conveyor.engine.stack import ComponentProbe

PHASES = ("probe", "receive", "receive_url", "receive_delta", "activate", "check", "flags")
# A phase that runs another phase's script after its own (receive_url downloads, then receives).
_THEN = {"receive_url": "receive"}


_KEY = secrets.token_bytes(32)  # this controller process's own; marks signed with it cannot be made elsewhere
_NONCE = 16  # hex digits of a mark's random half; its signature is as long


_HEX = re.compile(f"[0-9a-f]{{{2 * _NONCE}}}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _sign(nonce: str) -> str:
    return hmac.digest(_KEY, nonce.encode("ascii"), "sha256").hex()[:_NONCE]


def new_mark() -> str:
    """A fresh mark for one host command: a random nonce and its signature, 32 hex digits."""
    nonce = secrets.token_hex(_NONCE // 2)
    return nonce + _sign(nonce)


@lru_cache(maxsize=4096)  # a script's markers all carry its mark: checked once per output, not once per line
def genuine(mark: str) -> bool:
    """Whether `mark` is one this process made (so the line carrying it was printed by our script)."""
    if _HEX.fullmatch(mark) is None:
        return False
    return hmac.compare_digest(_sign(mark[:_NONCE]), mark[_NONCE:])


@cache
def _quoted_script(phase: str) -> str:
    return shlex.quote(script(phase))


@cache
def script(phase: str) -> str:
    """The shell source of one phase: the common prelude followed by the phase's own script."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    folder = resources.files("conveyor.engine") / "scripts"
    common = (folder / "common.sh").read_text(encoding="utf-8")
    body = (folder / f"{phase}.sh").read_text(encoding="utf-8")
    then = (folder / f"{_THEN[phase]}.sh").read_text(encoding="utf-8") if phase in _THEN else ""
    return common + body + then


def command(phase: str, args: list[str], env: dict[str, str] | None = None, *, mark: str | None = None) -> str:
    """A shell command line that runs `phase` with `args`, each quoted, under `env`; its markers carry
    `mark` (a new one unless given).

    `env` is exported by the script's own first line (`export 'NAME=value' …`, each assignment quoted for sh,
    then the line quoted with the rest of the script for the login shell): no `env` process runs first, which
    costs a host a millisecond of CPU per command, and it reads the same under any login shell."""
    for value in [*args, *(env or {}).values()]:
        if "\0" in value:
            raise ValueError("a NUL byte cannot be passed to a host command")
    for name in env or {}:
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"not a variable name: {name!r}")
    exports = ""
    if env:
        exports = shlex.quote("export " + " ".join(shlex.quote(f"{name}={value}")
                                                   for name, value in sorted(env.items())) + "\n")
    words = ["sh", "-c", exports + _quoted_script(phase), shlex.quote(f"conveyor-{phase.replace('_', '-')}")]
    words += [shlex.quote(mark or new_mark()), *(shlex.quote(arg) for arg in args)]
    return " ".join(words)


def probe(deploy_to: str, release: str, components: Sequence[ComponentProbe] = (),
          env: dict[str, str] | None = None) -> str:
    """Prepare the layout and report current, the releases on disk, each component's probe (run under `env`)
    and the journal's tail."""
    return command("probe", [deploy_to, release, *(arg for c in components for arg in c.args())], env)


def receive(deploy_to: str, release: str, sha256: str, shared: list[str], compression: str = "gzip") -> str:
    """Read the tarball from stdin, verify it, unpack it complete into releases/RELEASE."""
    return command("receive", [deploy_to, release, sha256, compression, *shared])


def receive_url(url: str, deploy_to: str, release: str, sha256: str, shared: list[str],
                compression: str = "gzip") -> str:
    """Download the tarball from URL on the host (curl or wget), then receive it as `receive` does."""
    return command("receive_url", [url, deploy_to, release, sha256, compression, *shared])


def receive_delta(deploy_to: str, release: str, base: str, sha256: str, shared: list[str],
                  deletions: list[str], compression: str = "gzip") -> str:
    """Build RELEASE from BASE (hard links) and the delta tarball on stdin, verified and complete."""
    return command("receive_delta", [deploy_to, release, base, sha256, compression, str(len(shared)), *shared,
                                     *deletions])


def activate(deploy_to: str, release: str, switch_line: str, ready_line: str, restart: str,
             env: dict[str, str], *, keep: int | None = None, protected: list[str] | None = None) -> str:
    """Switch current to RELEASE (or remove it when RELEASE is empty), journal it, restart; with `keep`,
    prune to that many releases (never a protected one) in the same round trip."""
    args = [deploy_to, release, switch_line, ready_line, restart]
    if keep is not None:
        args += [str(keep), *[p for p in protected or [] if p]]
    return command("activate", args, env)


def check(release_path: str, check_command: str, retries: int, interval: float, env: dict[str, str]) -> str:
    """Run a command check in the release directory, retrying."""
    return command("check", [release_path, check_command, str(retries), f"{interval:g}"], env)



def flags(deploy_to: str, path: str, content: str, sha256: str, mode: str, journal_line: str, on_change: str,
          env: dict[str, str]) -> str:
    """Write the host's flags file atomically (`write`, CONTENT whose sha256 is SHA256) or put back the one it
    replaced (`revert`); journal it, and run ON_CHANGE after a change, in one round trip."""
    return command("flags", [deploy_to, path, content, sha256, mode, journal_line, on_change], env)
