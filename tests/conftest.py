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


@pytest.fixture(autouse=True)
def _secrets_of_this_test() -> Iterator[None]:
    """Each test's secrets are its own: a value one test registers (a `${VAR}` its config reads, like a host
    name) is not masked in what a later test shows (the dashboard masks every value on its pages)."""
    from conveyor import secrets

    kept = set(secrets._SECRETS)
    yield
    secrets._SECRETS.clear()
    secrets._SECRETS.update(kept)


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


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, owned by the `postgres` user, that a test may stop and
    start again (the state store going away mid-deployment)."""

    def __init__(self) -> None:
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
        assert PG_BIN is not None
        self.bin = PG_BIN
        # Not under pytest's temp root: its parents are private to root, and the server runs as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.root / "data"
        for path in (self.root, self.data):
            path.mkdir(exist_ok=True)
            os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(self.root, 0o755)
        init = self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                 "--no-sync")
        if init.returncode != 0:
            _unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              timeout=60, check=False, cwd=self.root)

    def start(self) -> None:
        """Start the server (again) on its port; fail the test if it does not come up."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                                  "-o", options, "-w", "-t", "30", "start")
        if start.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {start.stderr} {log[-500:]}")

    def stop(self) -> None:
        """Stop the server at once, dropping every connection (as a crash or a network partition would)."""
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop the server and delete its cluster."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, owned by the `postgres` user; stopped at the end."""
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, started; the test may stop and start it."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


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
