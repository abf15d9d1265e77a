"""The terminal display: what a person reads at the end of a deployment."""

from __future__ import annotations

import io

from rich.console import Console

from conveyor.cli.display import Display
from conveyor.engine.events import (
    BakeFinished,
    BakeStarted,
    DeploymentFinished,
    HostFinished,
    HostStarted,
    HostStep,
    Measured,
)
from conveyor.engine.results import DeploymentResult, DeploymentStatus, HostOutcome


def shown(result: DeploymentResult) -> str:
    out = io.StringIO()
    display = Display(Console(file=out, width=200, no_color=True), live=False)
    display(DeploymentFinished(result))
    return out.getvalue()


def test_a_held_deployment_ends_with_the_command_that_carries_it_on() -> None:
    text = shown(DeploymentResult(42, "production", "deploy", "R2", DeploymentStatus.HELD,
                                  message="za: bake inconclusive"))
    assert "deploy #42 held" in text
    assert text.splitlines()[-1] == "to carry on once you have looked: conveyor deploy production --resume 42"


def test_a_finished_deployment_says_nothing_about_resuming() -> None:
    for status in (DeploymentStatus.SUCCEEDED, DeploymentStatus.ROLLED_BACK, DeploymentStatus.FAILED):
        assert "--resume" not in shown(DeploymentResult(7, "production", "deploy", "R2", status))


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def a_log_display() -> tuple[Display, Clock, io.StringIO]:
    out, clock = io.StringIO(), Clock()
    return Display(Console(file=out, width=200, no_color=True), live=False, clock=clock, ticker=False), clock, out


def test_a_slow_restart_gets_a_plain_line_in_a_log_at_most_every_ten_seconds() -> None:
    display, clock, out = a_log_display()
    display(HostStarted("uk-web-1", "uk", "web"))
    display(HostStep("uk-web-1", "uk", "restart"))
    clock.now += 5
    display.tick()
    assert "still running" not in out.getvalue()  # nothing has been running 10 s yet
    clock.now += 7
    display.tick()
    assert out.getvalue().splitlines()[-1] == "  still running: uk/uk-web-1 restart 12s"
    clock.now += 3
    display.tick()
    assert out.getvalue().count("still running") == 1  # at most one line per 10 s
    clock.now += 8
    display.tick()
    assert out.getvalue().splitlines()[-1] == "  still running: uk/uk-web-1 restart 23s"
    display(HostFinished(_outcome("uk-web-1")))
    clock.now += 30
    display.tick()
    assert out.getvalue().count("still running") == 2  # nothing runs any more: silence


def test_a_bake_counts_down_with_its_last_measurement() -> None:
    from datetime import UTC, datetime

    from conveyor.gates.analysis import Measurement, Verdict

    display, clock, out = a_log_display()
    display(BakeStarted(1, ["uk"], 300.0))
    reading = Measurement(check="error_ratio", kind="prometheus", scope="region uk", value=0.002,
                          condition="< 0.01", verdict=Verdict.PASS, at=datetime.now(UTC), detail="")
    display(Measured("bake", reading))
    clock.now += 10
    display.tick()
    assert out.getvalue().splitlines()[-1] == ("  still running: bake wave 1 (uk): 4m50s left, last reading "
                                               "region uk: error_ratio = 0.002 (pass)")
    display(BakeFinished(1, {"uk": "pass"}))
    clock.now += 10
    display.tick()
    assert "still running" not in out.getvalue().splitlines()[-1]


def _outcome(name: str) -> HostOutcome:
    from conveyor.inventory import Host

    host = Host(name=name, environment="staging", region="uk", role="web", address="127.0.0.1")
    return HostOutcome(host=host, status="succeeded", release="R1", duration=23.0)
