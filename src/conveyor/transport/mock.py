"""A transport that records every call and answers from a script: for tests, and for anyone writing a plug-in.

Code above the transport is tested by giving it one (httpx ships `MockTransport` for the same reason), not by
patching. Answers are scripted per host and per step: a step is the host-script phase a command runs
(`probe`, `receive`, `receive_url`, `receive_delta`, `activate`, `check`, `prune`), `run` for any other
command, or `connect`, `http_get` and `close`. Anything not scripted is handed to `passthrough`, a real
transport, when there is one, and answered with `default` otherwise; either way the call is recorded.

    transport = MockTransport({
        ("*", "probe"): lambda call: Completed(0, call.say("current=20260101T000000Z-abc1234")),
        ("za-web-2", "connect"): TransportError("za-web-2: connection refused"),
    })
    ws = Workspace.load("conveyor.yml", transports={"production": transport})
    ...
    assert transport.steps() == {"za-web-1": ["probe"]}
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.inventory import Host
from conveyor.transport.base import Completed, Connection, Transport

__all__ = ["ANY", "Answer", "Call", "MockConnection", "MockTransport"]

ANY = "*"
"""In a script's key, any host or any step."""

# One POSIX shell word as shlex.quote writes them: bare characters and quoted runs, side by side.
_WORD = re.compile(r"""(?:[^\s'"\\]+|'[^']*'|"(?:[^"\\]|\\.)*"|\\.)+""")
_SCRIPT_NAME = "conveyor-"  # a host script's $0 is conveyor-<phase>, the phase's underscores as dashes


@dataclass(frozen=True)
class Call:
    """One thing asked of a host, as the transport saw it."""

    host: Host
    step: str  # a host script's phase, "run" for another command, or "connect", "http_get", "close"
    command: str | None = None  # the command line, as given
    args: tuple[str, ...] = ()  # a host script's arguments, as the script receives them
    env: Mapping[str, str] = field(default_factory=dict)  # the variables it runs with (CONVEYOR_*)
    mark: str | None = None  # what a host script's markers must carry to be believed
    stdin: Path | None = None  # the file streamed into the command
    timeout: float | None = None
    url: str | None = None  # what an http_get asked for

    def say(self, *facts: str) -> str:
        """Marker lines this call's script could print (`say("step=switch", "current=R")`), for the output of
        a scripted answer: the engine believes them because they carry the call's mark."""
        return "".join(f"@@conveyor {self.mark} {fact}\n" for fact in facts)


Answer = Completed | tuple[int, str] | Exception | Callable[[Call], Any]
"""What a scripted step does: a run's Completed, an http_get's (status, body), an exception to raise, or a
function of the Call that returns one of those (or raises)."""


class MockTransport:
    """Records every call (`calls`) and answers each from `script`, keyed by (host, step); either may be ANY.

    A host is named by its name or its key (`region/name`). The most precise key wins: (host, step), then
    (ANY, step), then (host, ANY), then (ANY, ANY); a step of ANY stands for the commands only, not for
    connect, http_get or close. Unscripted calls go to `passthrough` if given; else a command gets `default`,
    connect and close succeed, and an http_get gets 200 and an empty body.
    """

    def __init__(self, script: Mapping[tuple[str, str], Answer] | None = None, *,
                 default: Completed = Completed(exit_code=0, output=""),
                 passthrough: Transport | None = None) -> None:
        self.script = dict(script or {})
        self.default = default
        self.passthrough = passthrough
        self.calls: list[Call] = []

    def steps(self) -> dict[str, list[str]]:
        """Host name → the steps of the commands it ran, in order."""
        out: dict[str, list[str]] = {}
        for call in self.calls:
            if call.command is not None:
                out.setdefault(call.host.name, []).append(call.step)
        return out

    def answer_for(self, call: Call) -> Answer | None:
        """The scripted answer to `call`, if any."""
        hosts = (call.host.name, call.host.key, ANY)
        for host in hosts:
            if (host, call.step) in self.script:
                return self.script[(host, call.step)]
        if call.command is None:
            return None  # connect, http_get and close are scripted by name only
        for host in hosts:
            if (host, ANY) in self.script:
                return self.script[(host, ANY)]
        return None

    def answer(self, call: Call) -> tuple[bool, Any]:
        """Record `call`; (True, what the script answers) or (False, None) when it is not scripted."""
        self.calls.append(call)
        answer = self.answer_for(call)
        if answer is None:
            return False, None
        if callable(answer):
            answer = answer(call)
        if isinstance(answer, Exception):
            raise answer
        return True, answer

    # -- the Transport protocol ----------------------------------------------------------------------------

    async def connect(self, host: Host) -> MockConnection:
        """A connection that records and answers; the passthrough's is opened unless `connect` is scripted."""
        scripted, _ = self.answer(Call(host, "connect"))
        inner = None if scripted or self.passthrough is None else await self.passthrough.connect(host)
        return MockConnection(self, host, inner)

    def deploy_path(self, host: Host, deploy_to: str) -> str:
        """The passthrough's idea of it, or `deploy_to` as it is."""
        return self.passthrough.deploy_path(host, deploy_to) if self.passthrough else deploy_to

    async def aclose(self) -> None:
        """Close the passthrough's shared state; this transport stays usable."""
        if self.passthrough is not None:
            await self.passthrough.aclose()


class MockConnection:
    """One host's connection: each call recorded and answered by its MockTransport."""

    def __init__(self, transport: MockTransport, host: Host, inner: Connection | None) -> None:
        self.transport = transport
        self.host = host
        self.inner = inner

    async def run(self, command: str, *, stdin: Path | None = None, timeout: float | None = None) -> Completed:
        """The scripted answer, the passthrough's, or the default."""
        step, mark, args, env = read_command(command)
        call = Call(self.host, step, command, args, env, mark, stdin, timeout)
        scripted, answer = self.transport.answer(call)
        if not scripted:
            if self.inner is not None:
                return await self.inner.run(command, stdin=stdin, timeout=timeout)
            return self.transport.default
        if isinstance(answer, tuple):
            return Completed(exit_code=answer[0], output=answer[1])
        if not isinstance(answer, Completed):
            raise TypeError(f"a scripted {step} answers a Completed, not {answer!r}")
        return answer

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        """The scripted (status, body), the passthrough's, or (200, "")."""
        scripted, answer = self.transport.answer(Call(self.host, "http_get", timeout=timeout, url=url))
        if not scripted:
            if self.inner is None:
                return 200, ""
            return await self.inner.http_get(url, timeout, follow_redirects=follow_redirects)
        if isinstance(answer, Completed) or not isinstance(answer, tuple):
            raise TypeError(f"a scripted http_get answers (status, body), not {answer!r}")
        return int(answer[0]), str(answer[1])

    async def close(self) -> None:
        """Recorded; the passthrough's connection is closed."""
        self.transport.answer(Call(self.host, "close"))
        if self.inner is not None:
            await self.inner.close()


def read_command(command: str) -> tuple[str, str | None, tuple[str, ...], dict[str, str]]:
    """(step, mark, args, env) of a host-script line, `sh -c SCRIPT conveyor-STEP MARK ARGS...` whose SCRIPT
    may start with a line `export NAME=VALUE...`; ("run", None, (), {}) for any other command line."""
    other: tuple[str, str | None, tuple[str, ...], dict[str, str]] = ("run", None, (), {})
    words = _WORD.findall(command)
    if "sh" not in words:
        return other
    at = words.index("sh")
    before = [_unquote(word) for word in words[:at]]
    # The script itself (words[at + 2]) is the longest word by far: it is skipped, never unquoted.
    after = [_unquote(word) for word in words[at + 3:]]
    if words[at + 1:at + 2] != ["-c"] or len(after) < 2 or not after[0].startswith(_SCRIPT_NAME):
        return other
    if before:
        return other
    env = _exported(words[at + 2])
    name, mark, *args = after
    return name.removeprefix(_SCRIPT_NAME).replace("-", "_"), mark, tuple(args), env


_CHUNK = re.compile(r"""'[^']*'|"(?:[^"\\]|\\.)*"|\\.|[^\s'"\\]+""")


def _exported(script: str) -> dict[str, str]:
    """The variables a quoted host script's first line exports: its quoted pieces are read one by one until
    they make a whole `export ...` line (the script itself, the longest word by far, is never unquoted)."""
    text = ""
    for chunk in _CHUNK.finditer(script):
        text += _unquote(chunk.group())
        if not "export ".startswith(text[:7]):
            return {}
        if text.endswith("\n"):
            try:
                words = shlex.split(text)
            except ValueError:
                continue  # a newline inside a value
            return dict(word.partition("=")[::2] for word in words[1:])
    return {}


def _unquote(word: str) -> str:
    [text] = shlex.split(word)
    return text
