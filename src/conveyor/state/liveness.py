"""Is a process on this machine still the one that took a lock?"""

from __future__ import annotations

import os
from pathlib import Path


def pid_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields after the last ')' are fixed.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether `pid` runs and, when we know its start time, is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    if start is not None:
        now = pid_start_time(pid)
        if now is not None and now != start:
            return False
        # A zombie (killed but not yet reaped) holds nothing.
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        if state[state.rfind(")") + 2:].split()[0] == "Z":
            return False
    except OSError:
        pass
    return True
