"""The shipped fake transport: it records every call, answers from a script per host and per step, hands the
rest to a real transport, and a Workspace takes it (and its own state store URL) as the engine's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine import commands
from conveyor.engine.probe import last_step, parse_probe
from conveyor.errors import TransportError
from conveyor.inventory import Host
from conveyor.operations.workspace import Workspace
from conveyor.transport.base import Completed
from conveyor.transport.local import LocalTransport
from conveyor.transport.mock import ANY, Call, MockTransport, read_command

WEB_1 = Host(name="za-web-1", environment="production", region="za", role="web", address="za-web-1")
WEB_2 = Host(name="za-web-2", environment="production", region="za", role="web", address="za-web-2")
UK_1 = Host(name="uk-web-1", environment="production", region="uk", role="web", address="uk-web-1")


async def _run(transport: MockTransport, host: Host, command: str, **kwargs: Any) -> Completed:
    connection = await transport.connect(host)
    try:
        return await connection.run(command, **kwargs)
    finally:
        await connection.close()


def run(transport: MockTransport, host: Host, command: str, **kwargs: Any) -> Completed:
    return asyncio.run(_run(transport, host, command, **kwargs))


# -- reading what the engine sends ------------------------------------------------------------------------


def test_a_host_script_line_is_read_back_as_its_step_mark_arguments_and_variables() -> None:
    hostile = ["/srv/www", "R1", "it's \"quoted\"\nand $(not run)", "", "--"]
    line = commands.command("receive_delta", hostile, {"CONVEYOR_APP": "www", "CONVEYOR_HOST": "a b"}, mark="m" * 32)

    assert read_command(line) == (
        "receive_delta", "m" * 32, tuple(hostile), {"CONVEYOR_APP": "www", "CONVEYOR_HOST": "a b"})


@pytest.mark.parametrize("value", ["", "a\n", "\n", "it's", "'", "export X=1\n", "a\nexport B=2", "\\n"])
def test_the_variables_a_script_exports_are_read_back_whatever_their_values(value: str) -> None:
    env = {"CONVEYOR_A": value, "CONVEYOR_B": "b"}
    assert read_command(commands.command("probe", ["/srv/www"], env))[3] == env


@pytest.mark.parametrize("phase", commands.PHASES)
def test_every_phase_is_its_own_step(phase: str) -> None:
    assert read_command(commands.command(phase, ["/srv/www"]))[0] == phase


@pytest.mark.parametrize("line", ["sudo systemctl reload www", "sh -c 'echo hi'", "sh -c 'echo' other-name x",
                                  "nice sh -c 'x' conveyor-probe m", ""])
def test_any_other_command_is_a_run(line: str) -> None:
    assert read_command(line) == ("run", None, (), {})


# -- recording ---------------------------------------------------------------------------------------------


def test_every_call_is_recorded_in_order_with_what_it_was_given(tmp_path: Path) -> None:
    transport = MockTransport()
    tarball = tmp_path / "release.tar.gz"
    probe = commands.command("probe", ["/srv/www", "R1"], mark="a" * 32)

    async def session() -> None:
        connection = await transport.connect(WEB_1)
        await connection.run(probe, timeout=30)
        await connection.run(commands.command("receive", ["/srv/www", "R1"]), stdin=tarball)
        await connection.run("uptime")
        await connection.http_get("http://127.0.0.1:8080/health", 5)
        await connection.close()

    asyncio.run(session())

    assert [(c.host.name, c.step) for c in transport.calls] == [
        ("za-web-1", "connect"), ("za-web-1", "probe"), ("za-web-1", "receive"), ("za-web-1", "run"),
        ("za-web-1", "http_get"), ("za-web-1", "close")]
    first = transport.calls[1]
    assert (first.command, first.args, first.mark, first.timeout, first.stdin) == (
        probe, ("/srv/www", "R1"), "a" * 32, 30, None)
    assert transport.calls[2].stdin == tarball
    assert transport.calls[4].url == "http://127.0.0.1:8080/health"
    assert transport.steps() == {"za-web-1": ["probe", "receive", "run"]}


def test_unscripted_calls_succeed_with_the_default() -> None:
    transport = MockTransport(default=Completed(0, "fine"))

    assert run(transport, WEB_1, "uptime") == Completed(0, "fine")

    async def get() -> tuple[int, str]:
        return await (await transport.connect(WEB_1)).http_get("http://x/", 1)

    assert asyncio.run(get()) == (200, "")


# -- scripted answers ------------------------------------------------------------------------------------


def test_answers_are_scripted_per_host_and_per_step_and_the_most_precise_one_wins() -> None:
    transport = MockTransport({
        ("za-web-2", "activate"): Completed(1, "restart failed"),
        (ANY, "activate"): Completed(0, "switched"),
        ("uk/uk-web-1", ANY): (3, "uk says no"),  # a host named by its key; a (status, output) pair
        (ANY, ANY): Completed(0, "anything else"),
    })
    activate = commands.command("activate", ["/srv/www", "R2"])

    assert run(transport, WEB_1, activate) == Completed(0, "switched")
    assert run(transport, WEB_2, activate) == Completed(1, "restart failed")
    assert run(transport, UK_1, activate) == Completed(0, "switched")  # (ANY, step) before (host, ANY)
    assert run(transport, UK_1, commands.command("probe", ["/srv/www", ""])) == Completed(3, "uk says no")
    assert run(transport, WEB_1, "uptime") == Completed(0, "anything else")


def test_an_answer_can_be_computed_from_the_call_with_markers_the_engine_believes() -> None:
    def probe(call: Call) -> Completed:
        return Completed(0, call.say("current=R1", "release=R1", "release=R0", "has_release=yes")
                         + "@@conveyor forged current=R9\n")

    transport = MockTransport({(ANY, "probe"): probe,
                               (ANY, "activate"): lambda call: Completed(0, call.say("step=switch"))})

    said = parse_probe(run(transport, WEB_1, commands.probe("/srv/www", "R1")).output)
    switched = run(transport, WEB_1, commands.command("activate", ["/srv/www", "R1"]))

    assert (said.current, said.releases, said.has_release) == ("R1", ("R0", "R1"), True)
    assert last_step(switched.output) == "switch"


def test_a_scripted_exception_is_raised_where_the_step_is() -> None:
    transport = MockTransport({("za-web-2", "connect"): TransportError("za-web-2: connection refused"),
                               ("za-web-1", "http_get"): TransportError("nothing listens on 8080")})

    with pytest.raises(TransportError, match="connection refused"):
        run(transport, WEB_2, "uptime")

    async def get() -> tuple[int, str]:
        return await (await transport.connect(WEB_1)).http_get("http://127.0.0.1:8080/", 1)

    with pytest.raises(TransportError, match="nothing listens"):
        asyncio.run(get())
    assert [(c.host.name, c.step) for c in transport.calls] == [
        ("za-web-2", "connect"), ("za-web-1", "connect"), ("za-web-1", "http_get")]


def test_a_step_of_any_stands_for_commands_only() -> None:
    transport = MockTransport({(ANY, ANY): TransportError("every command fails")})

    with pytest.raises(TransportError, match="every command fails"):
        run(transport, WEB_1, "uptime")
    assert [c.step for c in transport.calls] == ["connect", "run", "close"]  # connected and closed all the same


def test_an_answer_of_the_wrong_kind_is_a_type_error() -> None:
    transport = MockTransport({(ANY, "probe"): (200, "ok"), (ANY, "http_get"): Completed(0, "")})

    async def get() -> tuple[int, str]:
        return await (await transport.connect(WEB_1)).http_get("http://x/", 1)

    assert run(transport, WEB_1, commands.probe("/srv/www", "")) == Completed(200, "ok")
    with pytest.raises(TypeError, match=r"a scripted http_get answers \(status, body\)"):
        asyncio.run(get())


# -- passing through to a real transport ----------------------------------------------------------------


def test_what_is_not_scripted_runs_on_the_real_transport_and_is_recorded(tmp_path: Path) -> None:
    local = LocalTransport(tmp_path)
    transport = MockTransport({("za-web-2", "run"): Completed(7, "scripted")}, passthrough=local)

    real = run(transport, WEB_1, "pwd; echo $((6 * 7))")
    scripted = run(transport, WEB_2, "echo not run > ran")

    assert real == Completed(0, f"{local.host_dir(WEB_1)}\n42\n")
    assert scripted == Completed(7, "scripted")
    assert not (local.host_dir(WEB_2) / "ran").exists()
    assert transport.deploy_path(WEB_1, "/srv/www") == local.deploy_path(WEB_1, "/srv/www")
    assert transport.steps() == {"za-web-1": ["run"], "za-web-2": ["run"]}


def test_without_a_real_transport_deploy_to_is_used_as_it_is() -> None:
    assert MockTransport().deploy_path(WEB_1, "/srv/www") == "/srv/www"


# -- a workspace takes it ---------------------------------------------------------------------------------

CONFIG = """\
app: www
roles: {web: {}}
environments:
  production:
    regions:
      za: {hosts: {web: [za-web-1, za-web-2]}}
"""


def test_a_workspace_uses_the_transport_and_state_store_it_is_given(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.operations.status import status

    (tmp_path / "conveyor.yml").write_text(CONFIG)
    monkeypatch.setenv("CONVEYOR_STATE_URL", f"sqlite:///{tmp_path / 'not-this.db'}")
    transport = MockTransport({
        (ANY, "probe"): lambda call: Completed(0, call.say("current=R1", "release=R1")),
        ("za-web-2", "connect"): TransportError("za-web-2: connection refused"),
    })
    url = f"sqlite:///{tmp_path / 'given.db'}"
    ws = Workspace.load(tmp_path / "conveyor.yml", transports={"production": transport}, state_url=url)
    try:
        seen = status(ws, "production", verify=True)["environments"]["production"]["regions"]["za"]
    finally:
        ws.close()

    assert ws.transport("production") is transport
    assert ws.state_url == url
    assert (tmp_path / "given.db").exists()
    assert not (tmp_path / "not-this.db").exists()
    assert [(h["name"], h["release"], h.get("error")) for h in seen["hosts"]] == [
        ("za-web-1", "R1", None), ("za-web-2", None, "za-web-2: connection refused")]
    assert transport.steps() == {"za-web-1": ["probe"]}


def test_an_environment_without_a_given_transport_gets_the_one_its_config_names(tmp_path: Path) -> None:
    from conveyor.transport.clients import SSHClients

    (tmp_path / "conveyor.yml").write_text(CONFIG)
    ws = Workspace.load(tmp_path / "conveyor.yml", transports={"staging": MockTransport()})

    assert isinstance(ws.transport("production"), SSHClients)
