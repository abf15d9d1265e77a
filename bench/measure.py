"""Measuring one controller command: wall time, its CPU seconds, the machine's CPU seconds, bytes, memory.

- controller CPU: ``resource.getrusage(RUSAGE_CHILDREN)`` before and after; the command runs as our child and
  everything it starts is waited for by it (or, once orphaned, by us: this process is made a child
  subreaper, so the ``ControlPersist`` masters that ssh daemonises are reaped here and counted too).
- machine CPU: user+nice+system+irq+softirq jiffies of ``/proc/stat``, before and after (every process on
  the machine: the hosts' sshd, tar and rm, the controller, and any other work on this shared machine).
- bytes: the loopback interface's transmitted bytes (``/proc/net/dev``, ``lo``): both directions of every
  connection, whatever else uses loopback at the time included.
- memory: the peak of the summed PSS of the command's process tree, sampled (``/proc/PID/smaps_rollup``),
  and the largest single process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process adopt orphaned descendants (Linux), so their CPU time is counted and they are reaped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot: busy = user+nice+system+irq+softirq."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal


def loopback_bytes() -> int:
    """Bytes transmitted on `lo` since boot."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])
    return 0


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def background_cpu(seconds: float = 3.0) -> float:
    """How many CPUs' worth of work the machine does while we do nothing (other work on a shared machine)."""
    busy0, _ = machine_jiffies()
    time.sleep(seconds)
    busy1, _ = machine_jiffies()
    return (busy1 - busy0) / CLK_TCK / seconds


def _ppid_table() -> dict[int, int]:
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        table[int(entry)] = int(data[data.rindex(")") + 2 :].split()[1])
    return table


def descendants(roots: set[int], table: Mapping[int, int]) -> set[int]:
    """`roots` and every process below them in `table` (pid -> ppid)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found = set(roots)
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler:
    """Samples the summed PSS of a process tree (plus orphans we adopted) in a thread; keeps the peak."""

    def __init__(self, root: int, adopted: set[int] | None = None) -> None:
        self.root = root
        self.own = os.getpid()
        self.ignore = adopted or set()
        self.peak_kib = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        interval = 0.1
        while not self._stop.is_set():
            table = _ppid_table()
            # the command's tree, and daemonised descendants we adopted as subreaper (children of us
            # that are not one of the processes we already had: the fleet's sshd listeners)
            roots = {self.root} | {pid for pid, ppid in table.items() if ppid == self.own and pid not in self.ignore}
            tree = descendants(roots, table)
            total = sum(_pss_kib(pid) for pid in tree)
            self.peak_kib = max(self.peak_kib, total)
            self.peak_processes = max(self.peak_processes, len(tree))
            interval = min(0.5, 0.1 * max(1, len(tree) / 10))  # cheap when the tree is large
            self._stop.wait(interval)


@dataclass
class Measured:
    """What one controller command cost."""

    argv: list[str]
    exit_code: int
    wall_s: float
    controller_cpu_s: float
    controller_user_s: float
    controller_sys_s: float
    machine_cpu_s: float
    loopback_bytes: int
    peak_pss_mib: float
    peak_rss_mib: float  # the largest single process's peak (ru_maxrss of the command and what it waited for)
    peak_processes: int
    load_before: list[float]
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "exit_code": self.exit_code, "wall_s": round(self.wall_s, 3),
            "controller_cpu_s": round(self.controller_cpu_s, 3),
            "controller_user_s": round(self.controller_user_s, 3),
            "controller_sys_s": round(self.controller_sys_s, 3),
            "machine_cpu_s": round(self.machine_cpu_s, 3), "loopback_bytes": self.loopback_bytes,
            "peak_pss_mib": round(self.peak_pss_mib, 1), "peak_rss_mib": round(self.peak_rss_mib, 1),
            "peak_processes": self.peak_processes, "load_before": self.load_before, "timed_out": self.timed_out,
        }


def known_children() -> set[int]:
    """Our current children (the fleet's sshd listeners among them): not to be reaped by reap_orphans."""
    return {pid for pid, ppid in _ppid_table().items() if ppid == os.getpid()}


def reap_orphans(known: set[int], timeout: float = 5.0) -> list[int]:
    """Wait for adopted orphans (children of ours not in `known`) that have exited; return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        own = os.getpid()
        alive = []
        for pid, ppid in _ppid_table().items():
            if ppid != own or pid in known:
                continue
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    alive.append(pid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def adopted_cpu(known: set[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of the adopted descendants still running (children of ours not in `known`)."""
    user = system = 0.0
    own = os.getpid()
    table = _ppid_table()
    for pid in descendants({p for p, pp in table.items() if pp == own and p not in known}, table):
        try:
            data = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
        user += (int(fields[11]) + int(fields[13])) / CLK_TCK
        system += (int(fields[12]) + int(fields[14])) / CLK_TCK
    return user, system


def run_measured(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 600, stdin_path: Path | None = None, known: set[int] | None = None,
                 output_dir: Path | None = None) -> Measured:
    """Run a command to completion (bounded by `timeout`; on expiry its process group is killed) and measure it.

    Its stdout and stderr go to files (in `output_dir`, or a temporary directory), read back afterwards.
    """
    known = known if known is not None else known_children()
    load = loadavg()
    with contextlib.ExitStack() as stack:
        folder = output_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-out-")))
        folder.mkdir(parents=True, exist_ok=True)
        out_path, err_path = folder / "stdout", folder / "stderr"
        stdout = stack.enter_context(open(out_path, "wb"))
        stderr = stack.enter_context(open(err_path, "wb"))
        stdin = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0, _ = machine_jiffies()
        lo0 = loopback_bytes()
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group of the command we started (its own pid)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            with TreeSampler(proc.pid, known) as sampler:
                _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        reap_orphans(known, timeout=1.0)
        adopted = adopted_cpu(known)  # daemonised helpers still running (ssh ControlPersist masters)
        busy1, _ = machine_jiffies()
        lo1 = loopback_bytes()
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        stdout.close()
        stderr.close()
        out = out_path.read_text(encoding="utf-8", errors="replace")
        err = err_path.read_text(encoding="utf-8", errors="replace")
    user = usage1.ru_utime - usage0.ru_utime + adopted[0]
    system = usage1.ru_stime - usage0.ru_stime + adopted[1]
    return Measured(
        argv=list(argv), exit_code=proc.returncode, wall_s=wall, controller_cpu_s=user + system,
        controller_user_s=user, controller_sys_s=system, machine_cpu_s=(busy1 - busy0) / CLK_TCK,
        loopback_bytes=lo1 - lo0, peak_pss_mib=sampler.peak_kib / 1024, peak_rss_mib=usage.ru_maxrss / 1024,
        peak_processes=sampler.peak_processes, load_before=load, timed_out=expired.is_set(),
        stdout=out, stderr=err,
    )
