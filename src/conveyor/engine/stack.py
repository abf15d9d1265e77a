"""The stack a host runs on: its components' probes, asked in the probe step's own round trip, and what they
answered.

The probe script runs each `ComponentProbe` after it has read the layout and says one marker per component,
`component=NAME EXIT SIZE HEXERR OUT`: the exit status, how many bytes the probe printed (at most 4097 are
kept), the start of its error output as hex (`-` when empty), and its standard output: `=` and the text when
it is one line of printable characters (the common case, which costs the host no encoding process), else hex
(`-` when empty). Neither can hold a newline: nothing a probe prints can end the line or pass for a marker,
and what reaches a terminal is cleaned here (control characters shown as `?`). A host answers only for itself
(each host's output is read on its own), so the worst a hostile host can do is lie about its own values,
which is what it could do with any probe.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.config.consistency import Consistency
from conveyor.inventory import Host
from conveyor.values import format_duration

__all__ = ["MAX_OUTPUT", "ComponentProbe", "Reading", "host_env", "read_components", "stack_of"]

MAX_OUTPUT = 4096          # bytes of a probe's standard output that make a value
_MAX_ERROR = 1024          # bytes of its error output the host keeps, for the message
_TIMED_OUT = {124, 137}    # timeout(1)'s exits: it stopped the probe (137: it had to kill it)
_HEX = re.compile(r"[0-9a-f]*")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class ComponentProbe:
    """One component as a host is asked about it: its name, its probe command and how long it may take."""

    name: str
    command: str
    timeout: float

    def args(self) -> list[str]:
        """The probe script's arguments for this component: NAME TIMEOUT COMMAND."""
        return [self.name, f"{self.timeout:g}", self.command]


@dataclass(frozen=True)
class Reading:
    """What a host answered for one component: its value, or why there is none."""

    value: str | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """{"value", "error"}: one of them is null."""
        return {"value": self.value, "error": self.error}

    def shown(self) -> str:
        """The value as a person reads it: `(empty)` for an empty one, `error: ...` for none."""
        if self.value is None:
            return f"error: {self.error}"
        return self.value or "(empty)"


def read_components(lines: Iterable[str], asked: Sequence[ComponentProbe]) -> dict[str, Reading]:
    """Each asked component's reading from the probe script's `component=` marker bodies; a component the host
    did not answer (or answered in a form the script never prints) has an error saying so. Answers for
    components nobody asked about are ignored; a second answer for one is too."""
    timeouts = {probe.name: probe.timeout for probe in asked}
    found: dict[str, Reading] = {}
    for line in lines:
        parts = line.split(" ", 4)
        if len(parts) != 5 or parts[0] not in timeouts or parts[0] in found:
            continue
        name, exit_code, size, err, out = parts
        found[name] = _reading(exit_code, size, out, err, timeouts[name])
    return {probe.name: found.get(probe.name, Reading(None, "the host did not answer this probe"))
            for probe in asked}


def _reading(exit_code: str, size: str, out: str, err: str, timeout: float) -> Reading:
    if not (exit_code.isdigit() and size.isdigit()):
        return Reading(None, "the host's answer could not be read")
    code, printed = int(exit_code), int(size)
    stdout = _clean(out[1:]) if out.startswith("=") and len(out) <= MAX_OUTPUT + 1 else _text(out, MAX_OUTPUT)
    stderr = _text(err, _MAX_ERROR)
    if stdout is None or stderr is None:
        return Reading(None, "the host's answer could not be read")
    if printed > MAX_OUTPUT:
        return Reading(None, f"the probe printed more than {MAX_OUTPUT} bytes (4 KiB): print only the version")
    if code in _TIMED_OUT:
        return Reading(None, f"the probe timed out after {format_duration(timeout)}")
    if code != 0:
        said = [line.strip() for line in stderr.splitlines() if line.strip()]
        return Reading(None, f"the probe failed with exit {code}" + (f": {said[-1][:200]}" if said else ""))
    return Reading(stdout.strip())


def _text(word: str, limit: int) -> str | None:
    """A hex word as text (undecodable bytes replaced, control characters other than newline and tab shown as
    `?`), or None when it is not hex of at most `limit` bytes."""
    if word == "-":
        return ""
    if len(word) % 2 or len(word) > 2 * limit or not _HEX.fullmatch(word):
        return None
    try:
        raw = binascii.unhexlify(word)
    except binascii.Error:
        return None
    return _clean(raw.decode("utf-8", errors="replace"))


def _clean(text: str) -> str:
    """Control characters other than newline and tab shown as `?`."""
    return _UNPRINTABLE.sub("?", text)


def host_env(app: str, host: Host, release: str | None, previous: str | None, kind: str,
             deploy_to: str) -> dict[str, str]:
    """The CONVEYOR_* variables every command from the config sees on a host (restarts, checks, probes)."""
    return {
        "CONVEYOR_APP": app, "CONVEYOR_ENV": host.environment, "CONVEYOR_REGION": host.region,
        "CONVEYOR_ROLE": host.role, "CONVEYOR_HOST": host.name, "CONVEYOR_RELEASE": release or "",
        "CONVEYOR_PREVIOUS_RELEASE": previous or "", "CONVEYOR_DEPLOY_TO": deploy_to, "CONVEYOR_KIND": kind,
        "CONVEYOR_RELEASE_PATH": f"{deploy_to}/releases/{release}" if release else "",
    }


def stack_of(consistency: Consistency | None) -> Callable[[Host], list[ComponentProbe]] | None:
    """What each host is asked about, by its role (None when the config names no components)."""
    if consistency is None:
        return None
    by_role: dict[str, list[ComponentProbe]] = {}

    def asked(host: Host) -> list[ComponentProbe]:
        if host.role not in by_role:
            by_role[host.role] = [ComponentProbe(name, c.probe, c.timeout)
                                  for name, c in consistency.for_role(host.role).items()]
        return by_role[host.role]

    return asked
