"""State stores for the engine and history benchmarks: a SQLite file in a temporary directory, or a throwaway
PostgreSQL cluster (initdb as the `postgres` user, listening on 127.0.0.1 and a unix socket only), started
and removed by the benchmark itself, as tests/conftest.py does for the tests.
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

KINDS = ("sqlite", "postgres")


def _pg_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin"), reverse=True) if root.is_dir() else []
    return next((p for p in found if (p / "initdb").exists()), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Postgres:
    """A PostgreSQL cluster of the benchmark's own, with the server's default durability (fsync on)."""

    def __init__(self) -> None:
        pg = _pg_bin()
        if pg is None:
            raise SystemExit("PostgreSQL server binaries are not installed (apt-get install postgresql)")
        owner = pwd.getpwnam("postgres")
        self.bin = pg
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-bench-pg-"))
        self.data = self.root / "data"
        self.data.mkdir()
        for path in (self.root, self.data):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(self.root, 0o755)  # noqa: S103 - the server (another user) reaches its socket directory
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *argv: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / tool), *argv], capture_output=True,
                              text=True, timeout=120, check=False, cwd=self.root)
        if done.returncode != 0:
            log = (self.root / "log").read_text()[-500:] if (self.root / "log").exists() else ""
            raise SystemExit(f"{tool} failed: {done.stderr.strip()[-500:]} {log}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "-t", "60",
                  "start")

    def server_pids(self) -> list[int]:
        """The postmaster and its children (for their CPU time)."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        root = int(pid_file.read_text().split()[0])
        out = [root]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == root:
                    out.append(int(entry))
        return out

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far: its processes alive now, and the backends that ended (the
        postmaster waited for them, so they count in its children's times)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for number, pid in enumerate(self.server_pids()):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if number == 0:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime of the postmaster
        return total / ticks

    def remove(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "fast", "-w", "stop"], capture_output=True, timeout=120, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def state_store(kind: str) -> Iterator[tuple[str, Postgres | None]]:
    """(URL, the PostgreSQL server or None) of an empty store of `kind`, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
            yield f"sqlite:///{tmp}/state.db", None
        return
    server = Postgres()
    try:
        server.start()
        yield server.url, server
    finally:
        server.remove()


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on."""
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), "0")
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    import sqlite3

    pg = _pg_bin()
    pg_version = ""
    if pg is not None:
        pg_version = subprocess.run([str(pg / "postgres"), "--version"], capture_output=True, text=True,
                                    check=False).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model, "mem_gib": round(int(mem) / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "postgres": pg_version}


def publish(results: dict[str, Any], output: Path, section: Callable[[dict[str, Any]], list[str]]) -> None:
    """Write the results file, and print its Markdown section."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(section(results)))


def source_commit() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True, check=False).stdout.split("\n")
    return {"commit": head, "src_changes": [line[3:] for line in dirty if line.strip()]}
