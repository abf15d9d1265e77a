"""The check registry and its kinds, measured on a scripted host: what each kind asks of the host, and how
it judges the answer. The same table against real servers, over local and SSH hosts, is
tests/integration/test_checks_http.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, get_args

import pytest

from conveyor.checks import KINDS, Check, Place, Scope, Verdict, kind_of, parse_check
from conveyor.checks.client import get, redact
from conveyor.config.models import AlertsCheck, CommandCheck, Config, HttpCheck, PrometheusCheck
from conveyor.engine import commands
from conveyor.engine.checking import OnHost
from conveyor.errors import TransportError
from conveyor.transport.base import Completed, Connection
from conveyor.transport.mock import read_command

T = TypeVar("T")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ZA_WEB_1 = Scope(app="www", environment="production", region="za", release="R1", host="za-web-1")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@dataclass
class Ran:
    exit_code: int
    output: str = ""
    timed_out: bool = False


@dataclass
class ScriptedHost:
    """A host that answers GETs and commands from lists (the last answer repeats) and records each call."""

    answers: list[tuple[int, str] | TransportError] = field(default_factory=lambda: [(200, "ok")])
    ran: list[Ran] = field(default_factory=lambda: [Ran(0)])
    gets: list[tuple[str, float, bool]] = field(default_factory=list)
    commands: list[tuple[str, int, float, float]] = field(default_factory=list)

    async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
        self.gets.append((url, timeout, follow_redirects))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, TransportError):
            raise answer
        return answer

    async def run(self, command: str, *, retries: int, interval: float, timeout: float) -> Ran:
        self.commands.append((command, retries, interval, timeout))
        return self.ran.pop(0) if len(self.ran) > 1 else self.ran[0]


class Clock:
    """Virtual time: sleeping moves it on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def place(host: ScriptedHost | None, clock: Clock | None = None, scope: Scope = ZA_WEB_1) -> Place:
    clock = clock or Clock()
    return Place(scope, host=host, now=lambda: T0, clock=clock.clock, sleep=clock.sleep)


def verify(check: Any, at: Place) -> Any:
    """Verify `check` as the engine does after a host's restart."""
    verification = kind_of(check).verify
    assert verification is not None
    return run(verification(check, at))


def http(**fields: Any) -> HttpCheck:
    return HttpCheck.model_validate({"http": "http://127.0.0.1:8080/health"} | fields)


def command(**fields: Any) -> CommandCheck:
    return CommandCheck.model_validate({"command": "./bin/smoke"} | fields)


# -- the registry ----------------------------------------------------------------------------------------------


def test_each_kind_is_registered_once_under_its_key() -> None:
    assert [kind.key for kind in KINDS] == ["http", "command", "prometheus", "alerts"]
    assert [kind.model for kind in KINDS] == [HttpCheck, CommandCheck, PrometheusCheck, AlertsCheck]
    assert set(get_args(Check)) == {kind.model for kind in KINDS}


def test_a_check_finds_its_kind_by_its_key() -> None:
    for kind in KINDS:
        check = parse_check({kind.key: "http://127.0.0.1:9090" if kind.hint == "URL" else "true",
                             **({"query": "up", "condition": "result > 0"} if kind.key == "prometheus" else {})})
        assert kind_of(check) is kind
        assert type(check) is kind.model


def test_config_and_its_schema_name_every_kind_of_check() -> None:
    schema = Config.model_json_schema()
    for owner in ("Role", "Environment"):
        items = schema["$defs"][owner]["properties"]["checks"]["items"]
        assert {ref["$ref"] for ref in items["anyOf"]} == {f"#/$defs/{kind.model.__name__}" for kind in KINDS}


@pytest.mark.parametrize(("check", "spread"), [
    (http(), "each"), (command(), "each"), (command(on="one"), "one"), (command(on="local"), "region"),
    (PrometheusCheck(prometheus="http://p:9090", query="up", condition="result > 0"), "region"),
    (AlertsCheck(alerts="http://am:9093"), "region"),
])
def test_a_bake_measures_host_checks_on_hosts_and_the_rest_once_for_the_region(check: Any, spread: str) -> None:
    kind = kind_of(check)
    assert kind.spread(check) == spread
    assert kind.on_hosts is isinstance(check, HttpCheck | CommandCheck)


# -- http ------------------------------------------------------------------------------------------------------


def test_an_http_check_passes_on_the_expected_status_and_text_and_says_how_long_it_took() -> None:
    host = ScriptedHost(answers=[(200, "status: ok")])
    m = run(kind_of(http(contains="ok", timeout="2s")).measure(http(contains="ok", timeout="2s"), place(host)))
    assert (m.kind, m.scope, m.value, m.condition, m.verdict, m.at) == (
        "http", "host za-web-1", 200, "status 200", Verdict.PASS, T0)
    assert m.detail == "0 ms"
    assert host.gets == [("http://127.0.0.1:8080/health", 2.0, True)]


@pytest.mark.parametrize(("fields", "answer", "detail"), [
    ({}, (503, ""), "answered 503, expected 200"),
    ({"contains": "ok"}, (200, "down"), "answered 200 without 'ok'"),
    ({"matches": "^v[0-9]+$"}, (200, "beta"), "answered 200 not matching '^v[0-9]+$'"),
    ({}, TransportError("GET http://127.0.0.1:8080/health: connection refused"), "connection refused"),
])
def test_an_http_check_fails_saying_what_was_wrong(fields: dict[str, Any], answer: Any, detail: str) -> None:
    check = http(**fields)
    m = run(kind_of(check).measure(check, place(ScriptedHost(answers=[answer]))))
    assert m.verdict is Verdict.FAIL
    assert detail in m.detail


def test_a_slow_answer_fails_max_latency() -> None:
    clock = Clock()

    class Slow(ScriptedHost):
        async def http_get(self, url: str, timeout: float, *, follow_redirects: bool = True) -> tuple[int, str]:
            clock.now += 0.7
            return 200, "ok"

    check = http(max_latency="500ms")
    m = run(kind_of(check).measure(check, place(Slow(), clock)))
    assert (m.verdict, m.detail) == (Verdict.FAIL, "http://127.0.0.1:8080/health took 700 ms (max 500 ms)")


@pytest.mark.parametrize(("expect", "follows"), [(200, True), (404, True), (301, False), (302, False), (308, False)])
def test_redirects_are_followed_unless_the_check_expects_one(expect: int, follows: bool) -> None:
    host = ScriptedHost(answers=[(expect, "")])
    check = http(expect=expect)
    assert run(kind_of(check).measure(check, place(host))).verdict is Verdict.PASS
    assert host.gets[0][2] is follows


def test_verification_retries_an_interval_apart_until_it_passes() -> None:
    clock = Clock()
    host = ScriptedHost(answers=[(502, ""), (502, ""), (200, "ok")])
    check = http(retries=3, interval="2s")
    m = verify(check, place(host, clock))
    assert (m.verdict, m.value) == (Verdict.PASS, 200)
    assert (len(host.gets), clock.sleeps) == (3, [2.0, 2.0])


def test_verification_that_runs_out_of_retries_names_the_attempts_and_the_last_failure() -> None:
    host = ScriptedHost(answers=[(502, ""), (404, "")])
    check = http(retries=1, interval="1s")
    m = verify(check, place(host))
    assert (m.verdict, m.value) == (Verdict.FAIL, 404)
    assert m.detail == "check failed after 2 attempt(s): http://127.0.0.1:8080/health answered 404, expected 200"


def test_without_a_host_an_http_check_is_inconclusive_never_a_pass() -> None:
    m = run(kind_of(http()).measure(http(), place(None)))
    assert (m.verdict, m.detail) == (Verdict.INCONCLUSIVE, "no host to measure on")


# -- command ---------------------------------------------------------------------------------------------------


def test_a_command_is_measured_once_on_the_host_and_reports_its_last_lines() -> None:
    host = ScriptedHost(ran=[Ran(3, "one\ntwo\nthree\nfour\n")])
    check = command(timeout="20s", retries=4)
    m = run(kind_of(check).measure(check, place(host)))
    assert (m.kind, m.value, m.condition, m.verdict, m.detail) == ("command", 3, "exit 0", Verdict.FAIL,
                                                                   "two\nthree\nfour")
    assert host.commands == [("./bin/smoke", 0, 0, 20.0)]  # a bake's measurement is one attempt


def test_a_command_that_times_out_says_so() -> None:
    m = run(kind_of(command()).measure(command(), place(ScriptedHost(ran=[Ran(124, "partial", True)]))))
    assert (m.verdict, m.detail) == (Verdict.FAIL, "timed out")


def test_verification_runs_the_retries_on_the_host_within_one_budget() -> None:
    host = ScriptedHost(ran=[Ran(7, "nope")])
    check = command(timeout="10s", retries=2, interval="3s")
    m = verify(check, place(host))
    assert host.commands == [("./bin/smoke", 2, 3.0, 10.0 * 3 + 3.0 * 2 + 5)]
    assert (m.verdict, m.value, m.detail) == (Verdict.FAIL, 7, "check './bin/smoke' failed with exit 7")


def test_a_local_command_runs_here_with_the_scope_filled_in() -> None:
    host = ScriptedHost()
    check = command(command="echo $region $release; exit 2", on="local")
    m = run(kind_of(check).measure(check, place(host)))
    assert (m.verdict, m.value, m.detail) == (Verdict.FAIL, 2, "za R1")
    assert host.commands == []


# -- the engine's side, and the client ---------------------------------------------------------------------------


def test_on_host_runs_the_check_script_in_the_release_and_hides_its_markers() -> None:
    seen: list[tuple[str, float]] = []
    mark = commands.new_mark()

    async def run_step(line: str, timeout: float) -> Completed:
        seen.append((line, timeout))
        return Completed(1, f"@@conveyor pid=12 11\n@@conveyor {mark} step=check\nsmoke: down\n")

    async def connection() -> Connection:
        raise AssertionError("a command needs no GET")

    on_host = OnHost(run_step, connection, "/srv/www/releases/R1", {"CONVEYOR_RELEASE": "R1"})
    done = run(on_host.run("./bin/smoke", retries=1, interval=2.0, timeout=30.0))
    assert (done.exit_code, done.output) == (1, "smoke: down")
    assert on_host.last is not None
    assert f"{mark} step=check" in on_host.last.output  # kept whole, for the host's outcome
    ((line, timeout),) = seen
    step, _mark, args, env = read_command(line)
    assert (step, args, env, timeout) == ("check", ("/srv/www/releases/R1", "./bin/smoke", "1", "2"),
                                          {"CONVEYOR_RELEASE": "R1"}, 30.0)


def test_only_http_and_https_are_fetched() -> None:
    with pytest.raises(TransportError, match="only http:// and https://"):
        run(get("file:///etc/passwd", 1, limit=10))


def test_credentials_in_a_url_are_never_printed() -> None:
    assert redact("https://reader:s3cret@prom.example:9090/api") == "https://prom.example:9090/api"
    assert redact("http://127.0.0.1:8080/health") == "http://127.0.0.1:8080/health"
