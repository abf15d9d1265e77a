"""The terminal display: what a person reads at the end of a deployment."""

from __future__ import annotations

import io

from rich.console import Console

from conveyor.cli.display import Display
from conveyor.engine.events import Event
from conveyor.engine.results import DeploymentResult, DeploymentStatus


def shown(result: DeploymentResult) -> str:
    out = io.StringIO()
    display = Display(Console(file=out, width=200, no_color=True), live=False)
    display(Event("deployment_finished", {"result": result}))
    return out.getvalue()


def test_a_held_deployment_ends_with_the_command_that_carries_it_on() -> None:
    text = shown(DeploymentResult(42, "production", "deploy", "R2", DeploymentStatus.HELD,
                                  message="za: bake inconclusive"))
    assert "deploy #42 held" in text
    assert text.splitlines()[-1] == "to carry on once you have looked: conveyor deploy production --resume 42"


def test_a_finished_deployment_says_nothing_about_resuming() -> None:
    for status in (DeploymentStatus.SUCCEEDED, DeploymentStatus.ROLLED_BACK, DeploymentStatus.FAILED):
        assert "--resume" not in shown(DeploymentResult(7, "production", "deploy", "R2", status))
