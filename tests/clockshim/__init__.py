"""Put this folder on a `conveyor` process's PYTHONPATH to fix its clock (see sitecustomize.py)."""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = Path(__file__).parent


def clock_env(now: str | None = None, clock_file: Path | None = None) -> dict[str, str]:
    """The environment variables that start a `conveyor` process with its windows' clock at `now` (or read
    from `clock_file` each time); empty for the real clock."""
    if now is None and clock_file is None:
        return {}
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(FOLDER), os.environ.get("PYTHONPATH", "")) if p)}
    if now is not None:
        env["CONVEYOR_TEST_NOW"] = now
    if clock_file is not None:
        env["CONVEYOR_TEST_CLOCK_FILE"] = str(clock_file)
    return env
