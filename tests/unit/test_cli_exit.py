"""The `conveyor` command leaves without tearing the interpreter down, after the exit handlers and the output,
with the code `main` ended with; a thread still at work gets the interpreter's own exit."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.cli import app


class _Left(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@pytest.fixture
def leaving(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What happened on the way out, in order; os._exit raises _Left instead of ending the test run."""
    seen: list[str] = []

    def _exit(code: int) -> None:
        seen.append(f"_exit {code}")
        raise _Left(code)

    monkeypatch.setattr(os, "_exit", _exit)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: seen.append("exit handlers"))
    return seen


def _ending(monkeypatch: pytest.MonkeyPatch, how: Callable[[], None]) -> None:
    monkeypatch.setattr(app, "main", how)


@pytest.mark.parametrize(("code", "left_with"), [(0, 0), (None, 0), (3, 3), (130, 130)])
def test_the_code_main_ended_with_is_the_process_s(code: int | None, left_with: int, leaving: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def main() -> None:
        print("said")
        sys.exit(code)

    _ending(monkeypatch, main)
    with pytest.raises(_Left) as left:
        app.run()
    assert left.value.code == left_with
    assert leaving == ["exit handlers", f"_exit {left_with}"]


def test_main_returning_is_success(leaving: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _ending(monkeypatch, lambda: None)
    with pytest.raises(_Left) as left:
        app.run()
    assert left.value.code == 0


def test_a_message_given_to_exit_is_printed_and_the_code_is_1(leaving: list[str], monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> None:
        sys.exit("conveyor: something went wrong")

    _ending(monkeypatch, main)
    with pytest.raises(_Left) as left:
        app.run()
    assert left.value.code == 1
    assert "conveyor: something went wrong" in capsys.readouterr().err


def test_a_thread_still_at_work_gets_the_interpreter_s_own_exit(leaving: list[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    try:
        def main() -> None:
            sys.exit(4)

        _ending(monkeypatch, main)
        with pytest.raises(SystemExit) as exited:
            app.run()
        assert exited.value.code == 4
        assert leaving == []  # neither the handlers nor _exit: the interpreter runs them, after the thread
    finally:
        release.set()
        worker.join()


def test_the_installed_command_flushes_its_output_and_runs_exit_handlers(tmp_path: Path) -> None:
    # In a real process: a handler registered while the command ran still runs, and everything it printed,
    # far more than a pipe holds, arrives.
    done_file = tmp_path / "handled"
    script = (
        "import atexit, sys\n"
        "from conveyor.cli import app\n"
        "def main():\n"
        f"    atexit.register(lambda: open({str(done_file)!r}, 'w').write('yes'))\n"
        "    sys.stdout.write('x' * 300000 + '\\n')\n"
        "    sys.exit(5)\n"
        "app.main = main\n"
        "app.run()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 5
    assert done.stdout == "x" * 300000 + "\n"
    assert done_file.read_text() == "yes"
