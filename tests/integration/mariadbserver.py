"""A real MariaDB server for tests (Debian's mariadb-server): its own datadir in a temp directory, reached
through the client binary on a Unix socket (no networking), stopped by its PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

MARIADBD = next((p for p in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld") if os.access(p, os.X_OK)), None)
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
CLIENT = shutil.which("mariadb") or shutil.which("mysql")


@dataclass
class MariaDB:
    """A running server, reached through the client binary on its socket."""

    socket: Path
    version: str

    def run(self, sql: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(CLIENT), "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"]
        if database:
            argv.append(f"--database={database}")
        return subprocess.run([*argv, "-e", sql], capture_output=True, text=True, timeout=60, check=False)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def running(root: Path, *options: str) -> Iterator[MariaDB]:
    """A MariaDB server with its datadir under `root`, ready to answer; stopped when the block ends. `options`
    are added to the server's command line."""
    if MARIADBD is None or INSTALL_DB is None or CLIENT is None:
        _unavailable("MariaDB is not installed (apt-get install mariadb-server)")
    data, socket = root / "data", root / "mariadb.sock"
    init = subprocess.run([str(INSTALL_DB), "--no-defaults", f"--datadir={data}", "--user=root",
                           "--auth-root-authentication-method=normal", "--skip-test-db"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    log = open(root / "server.log", "w")  # noqa: SIM115 - the server writes to it until it stops
    server = subprocess.Popen([str(MARIADBD), "--no-defaults", f"--datadir={data}", f"--socket={socket}",
                               "--skip-networking", "--user=root", f"--pid-file={root / 'mariadb.pid'}",
                               "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
                               "--skip-log-bin", "--character-set-server=utf8mb4", *options],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        probe = MariaDB(socket, "")
        while True:
            if server.poll() is not None:
                pytest.fail(f"mariadbd exited {server.returncode}:\n{(root / 'server.log').read_text()[-2000:]}")
            if socket.exists() and probe.run("SELECT 1").returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"mariadbd did not answer within 60s:\n{(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        version = probe.run("SELECT VERSION()").stdout.strip()
        yield MariaDB(socket, version)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
