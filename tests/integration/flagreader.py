"""Drive flagapp.py: start it (locally or through ssh), and wait for a line with a deadline."""

from __future__ import annotations

import selectors
import subprocess
import time
from pathlib import Path

APP = Path(__file__).with_name("flagapp.py")


class FlagReader:
    """A running flagapp.py and the lines it printed."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        try:
            first = self.wait(lambda line: line.startswith("pid="), 30, "the app to start")
        except BaseException:
            self.stop()  # nothing left running, no pipe left open, when it never started
            raise
        self.pid = int(first.removeprefix("pid="))

    def wait(self, match: object, timeout: float, what: str) -> str:
        """The first line from now on for which `match(line)` holds (a string: that exact line)."""
        def ok(line: str) -> bool:
            return match(line) if callable(match) else line == match  # type: ignore[no-any-return]

        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; it printed "
                                         f"{self.lines[-10:]}")
                if not selector.select(left):
                    continue
                line = self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"the app ended while waiting for {what}; it printed {self.lines[-10:]}")
                self.lines.append(line.rstrip("\n"))
                if ok(self.lines[-1]):
                    return self.lines[-1]

    def ask(self, expected: str, timeout: float, what: str) -> str:
        """Ask until it says `expected` (each answer is a fresh evaluation), within `timeout`."""
        assert self.process.stdin is not None
        deadline = time.monotonic() + timeout
        while True:
            self.process.stdin.write("?\n")
            self.process.stdin.flush()
            line = self.wait(lambda _line: True, max(deadline - time.monotonic(), 0.01), what)
            if line == expected:
                return line

    def stop(self) -> None:
        """End the app (by its own process) and close its pipes."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
