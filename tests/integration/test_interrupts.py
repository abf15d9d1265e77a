"""Ctrl-C, SIGTERM and a closed pipe (issue 15, point 4): one message, no traceback, every host touched
recorded with its step, and the command that carries on.

The restart of the canary waits on a file the test creates (no sleeps): the test sends its signals while
the restart is known to be running, then lets it finish or not.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def slow_restart(gate: Path) -> str:
    """A restart that says it started, then waits (bounded) until the test opens the gate."""
    return (f'touch "$CONVEYOR_DEPLOY_TO/restarting"; i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; '
            'do sleep 0.05; i=$((i+1)); done; echo "$CONVEYOR_RELEASE" > "$CONVEYOR_DEPLOY_TO/serving"')


@pytest.fixture
def fleet(make_fleet: Callable[[dict[str, Any]], Any], tmp_path: Path) -> Any:
    gate = tmp_path / "gate"
    made = make_fleet({
        "app": "shop", "artifact": {"path": "app"}, "deploy_to": "/srv/shop",
        "roles": {"web": {"restart": slow_restart(gate), "canary": 1, "batch": 2}},
        "environments": {"staging": {"transport": "local",
                                     "regions": {"uk": {"hosts": {"web": ["uk-web-1", "uk-web-2", "uk-web-3"]}}}}},
    })
    made.gate = gate
    return made


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start(fleet: Any) -> subprocess.Popen[str]:
    fleet.write_artifact("1")
    return subprocess.Popen(fleet.command("deploy", "staging", "--yes"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=fleet.env_vars(), cwd=fleet.root,
                            stdin=subprocess.DEVNULL)


def stderr_lines(process: subprocess.Popen[str]) -> list[str]:
    """The lines the process writes on stderr, collected as they come by a thread (which closes the pipes
    once the process has closed its end)."""
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        assert process.stdout is not None
        lines.extend(iter(process.stderr.readline, ""))
        process.stderr.close()
        process.stdout.close()

    threading.Thread(target=read, daemon=True).start()
    return lines


def restarting(fleet: Any) -> bool:
    return (fleet.host_dir("staging", "uk", "uk-web-1") / "restarting").exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_one_signal_lets_the_host_at_work_finish_then_stops(fleet: Any, signum: int, code: int) -> None:
    process = start(fleet)
    wait_for(lambda: restarting(fleet), "the canary's restart")
    process.send_signal(signum)
    lines = stderr_lines(process)
    wait_for(lambda: any("letting the hosts at work finish" in line for line in lines), "the signal's message")
    fleet.gate.touch()  # only once the signal is taken: the canary then finishes its step, and nothing more
    assert process.wait(timeout=60) == code
    wait_for(lambda: process.stderr is not None and process.stderr.closed, "the end of stderr")
    err = "".join(lines)
    assert "Traceback" not in err
    assert "is closed" not in err  # asyncio's complaint about an unreaped child
    name = signal.Signals(signum).name
    assert err.count(f"interrupted by {name}") == 2, err  # the region's line and the verdict, said once each
    assert "conveyor deploy staging --resume 1" in err
    # The canary finished its step; nothing else moved.
    currents = fleet.currents("staging")
    assert currents["uk-web-1"] is not None
    assert currents["uk-web-2"] is None
    assert currents["uk-web-3"] is None
    detail = fleet.json("history", "--id", "1")
    assert detail["status"] == "interrupted"
    hosts = {h["host"]: h for h in detail["hosts"]}
    assert hosts["uk-web-1"]["status"] == "succeeded"
    assert {hosts["uk-web-2"]["status"], hosts["uk-web-3"]["status"]} == {"pending"}
    # Carrying on finishes the job.
    fleet.gate.touch()
    resumed = fleet.json("deploy", "staging", "--resume", "1", "--yes")
    assert resumed["status"] == "succeeded"
    assert set(fleet.currents("staging").values()) == {currents["uk-web-1"]}


def test_a_second_ctrl_c_stops_the_host_mid_step_and_history_says_where(fleet: Any) -> None:
    process = start(fleet)
    wait_for(lambda: restarting(fleet), "the canary's restart")
    lines = stderr_lines(process)
    process.send_signal(signal.SIGINT)
    # Signals are not queued: the second is sent once the first was taken.
    wait_for(lambda: any("letting the hosts at work finish" in line for line in lines), "the first signal's message")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    wait_for(lambda: process.stderr is not None and process.stderr.closed, "the end of stderr")
    err = "".join(lines)
    assert "Traceback" not in err
    assert "is closed" not in err
    assert "stopped mid-step: uk-web-1 (during " in err
    detail = fleet.json("history", "--id", "1")
    assert detail["status"] == "interrupted"
    hosts = {h["host"]: h for h in detail["hosts"]}
    assert hosts["uk-web-1"]["status"] == "interrupted"
    assert hosts["uk-web-1"]["step"]
    # Whatever `current` says, it names a complete release, and status --verify offers the repair.
    verify = fleet.run("status", "staging", "--verify")
    assert "--resume 1" in verify.stdout + verify.stderr


def test_a_reader_that_goes_away_is_no_error(fleet: Any) -> None:
    for args in (("history", "--json"), ("validate",), ("plan", "staging")):
        fleet.write_artifact("1")
        reader = subprocess.Popen(fleet.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=fleet.env_vars(), cwd=fleet.root, stdin=subprocess.DEVNULL)
        assert reader.stdout is not None
        reader.stdout.close()  # the pipe's reader is gone before anything is written
        _, err = reader.communicate(timeout=60)
        assert err == b"", err  # not a traceback, not a word: the reader left, nobody is there to read one
        assert reader.returncode in (0, 1, 141), (args, reader.returncode)
