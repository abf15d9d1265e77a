"""`command`: a command that passes with exit 0, on each host that moved (`on: each`), on one of them
(`on: one`), or on the controller (`on: local`, with `$region`, `$release`... filled in).

On a host it runs in the new release's directory with the CONVEYOR_* variables set, as the host's `check`
step; after a restart its retries run on the host itself, in the same round trip.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from conveyor.checks.base import CheckKind, Measurement, Place, Repeat, Spread, Verdict
from conveyor.values import Duration, Int

__all__ = ["KIND", "CommandCheck", "measure", "verify"]


class CommandCheck(Repeat):
    """A command that passes with exit 0: on each host of the role, on one host, or on the controller."""

    command: str = Field(min_length=1)
    on: Literal["each", "one", "local"] = "each"
    timeout: Duration = 30.0
    retries: Int = Field(default=0, ge=0, le=1000)
    interval: Duration = 1.0

    def describe(self) -> str:
        """One line for plans and reports."""
        return self.name or f"run {self.command!r}" + ("" if self.on == "each" else f" ({self.on})")


def _last_lines(text: str, count: int) -> str:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines[-count:])


def _reading(check: CommandCheck, at: Place, code: int | None, verdict: Verdict, detail: str) -> Measurement:
    return Measurement(check.describe(), "command", at.scope.describe(), code, "exit 0", verdict, at.now(), detail)


async def _here(check: CommandCheck, at: Place) -> Measurement:
    """Run the command on the controller (`sh -c`, its variables filled in from the scope)."""
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", at.scope.substitute(check.command), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), check.timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return _reading(check, at, None, Verdict.FAIL, f"timed out after {check.timeout:g}s")
    assert proc.returncode is not None
    verdict = Verdict.PASS if proc.returncode == 0 else Verdict.FAIL
    return _reading(check, at, proc.returncode, verdict, _last_lines(out.decode("utf-8", "replace"), 3))


async def measure(check: CommandCheck, at: Place) -> Measurement:
    """Run it once, where `on` says (without a host, on the controller): PASS on exit 0."""
    if check.on == "local" or at.host is None:
        return await _here(check, at)
    done = await at.host.run(check.command, retries=0, interval=0, timeout=check.timeout)
    verdict = Verdict.PASS if done.exit_code == 0 else Verdict.FAIL
    return _reading(check, at, done.exit_code, verdict, "timed out" if done.timed_out else _last_lines(done.output, 3))


async def verify(check: CommandCheck, at: Place) -> Measurement:
    """Run it on the host after its restart, with its retries (on the host, one round trip)."""
    if at.host is None:
        return _reading(check, at, None, Verdict.INCONCLUSIVE, "no host to measure on")
    # Every attempt may take its timeout, and the pauses between them count too.
    budget = check.timeout * (check.retries + 1) + check.interval * check.retries + 5
    done = await at.host.run(check.command, retries=check.retries, interval=check.interval, timeout=budget)
    if done.exit_code == 0:
        return _reading(check, at, 0, Verdict.PASS, _last_lines(done.output, 3))
    return _reading(check, at, done.exit_code, Verdict.FAIL,
                    f"check {check.command!r} failed with exit {done.exit_code}")


def _spread(check: CommandCheck) -> Spread:
    return "region" if check.on == "local" else check.on


KIND = CheckKind(key="command", hint="TEXT", model=CommandCheck, spread=_spread, measure=measure, verify=verify)
