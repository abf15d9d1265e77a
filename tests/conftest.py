"""Fixtures shared by every test: a real PostgreSQL server, started for the session when it is installed."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where .ci/run installs everything."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None) \
    if Path("/usr/lib/postgresql").is_dir() else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, owned by the `postgres` user; stopped at the end."""
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        _unavailable("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("no postgres user to run the server as")
    # Not under pytest's temp root: its parents are private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
    data = root / "data"
    for path in (root, data):
        path.mkdir(exist_ok=True)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    os.chmod(root, 0o755)

    def as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              timeout=60, check=False, cwd=root)

    init = as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    if init.returncode != 0:
        _unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options,
                        "-w", "-t", "30", "start")
    if start.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {start.stderr} {log[-500:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server (every AWS service: EC2, Auto Scaling, S3...) on 127.0.0.1: its URL, for `endpoint_url`.

    While it runs, boto3 reads test credentials from the environment (never a profile or instance
    metadata); the environment is restored when the session ends. See motoserver.py.
    """
    try:
        import moto.server  # noqa: F401
    except ImportError:
        _unavailable("moto's server is not installed (pip install 'moto[server]')")
    import motoserver

    with motoserver.aws_environment(), motoserver.running() as url:
        yield url
