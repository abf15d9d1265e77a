"""Command-line mistakes get a message and exit 2, never a traceback, whatever click Typer ships with."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

CONVEYOR = shutil.which("conveyor") or "conveyor"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONVEYOR, *args], capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "message"), [
    (["deploy"], "Missing argument"),
    (["no-such-command"], "No such command"),
    (["status", "--no-such-option"], "No such option"),
    (["history", "-n", "zero"], "Invalid value"),
])
def test_a_command_line_mistake_exits_2_with_a_message(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2, done
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_with_json_the_mistake_is_one_json_document() -> None:
    done = run("deploy", "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"error": "Missing argument 'environment'.", "exit_code": 2}
