"""A real Prometheus and a real Alertmanager (Debian's packages) on loopback, scraping a tiny exporter.

A plain module shared by the tests that need real monitoring (the `stack` fixture lives in conftest.py):
- `Exporter`: a thread serving `/metrics` with the gauge `app_error_ratio`. A test sets a region's value
  directly (`set`), or points the exporter at a directory (`follow`) whose files `<region>/<host>` each hold
  one host's ratio: `app_error_ratio{region="<region>", host="<host>"}`, read afresh at every scrape, so a
  host's restart command can change what Prometheus sees.
- Prometheus scraping it every second, Alertmanager with a null receiver and no clustering.
Each process is stopped by its recorded PID at the end. Nothing leaves 127.0.0.1.

Needs `apt-get install -y prometheus prometheus-alertmanager`: skipped without them on a developer machine,
failed in CI (env CI set), where .ci/run installs them.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = Path("/usr/bin/prometheus")
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")

# Only ever talk to this machine, and never through a proxy the environment may name.
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where .ci/run installs everything."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET on loopback: (status, body), also for HTTP error statuses."""
    try:
        with LOCAL.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def wait_for(what: str, condition: Callable[[], bool], deadline: float,
             describe: Callable[[], str] | None = None) -> None:
    """Poll `condition` until it holds or `deadline` (monotonic) passes."""
    while True:
        try:
            if condition():
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in time" + (f": {describe()}" if describe else ""))
        time.sleep(0.1)


# -- the exporter ----------------------------------------------------------------------------------------


class Exporter:
    """`/metrics` on 127.0.0.1: a gauge per region whose value the test sets, and one per host file."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"za": "0.001"}
        self.folders: list[Path] = []
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = ("# HELP app_error_ratio Share of requests that failed.\n# TYPE app_error_ratio gauge\n"
                        + "\n".join(exporter.lines()) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="exporter", daemon=True)
        self.thread.start()

    def lines(self) -> list[str]:
        """The samples of one scrape."""
        with self.lock:
            lines = [f'app_error_ratio{{region="{region}"}} {value}' for region, value in self.values.items()]
            folders = list(self.folders)
        for folder in folders:
            for path in sorted(folder.glob("*/*")):
                if path.name.startswith("."):
                    continue  # a file being written (writers rename into place)
                try:
                    value = float(path.read_text(encoding="utf-8").strip())
                except (OSError, ValueError):
                    continue  # one unreadable file must not spoil the whole scrape
                lines.append(f'app_error_ratio{{region="{path.parent.name}", host="{path.name}"}} {value!r}')
        return lines

    def set(self, region: str, value: str) -> None:
        """Report `value` for `region` (a series without a host label)."""
        with self.lock:
            self.values[region] = value

    def follow(self, folder: Path) -> None:
        """Report every `folder/<region>/<host>` file's number at each scrape."""
        with self.lock:
            self.folders.append(folder)

    def unfollow(self, folder: Path) -> None:
        """Stop reporting a folder's files."""
        with self.lock:
            self.folders.remove(folder)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# -- the servers ------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A started binary: its URL, process (PID recorded) and log."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    ready_after: float | None = None

    def log_tail(self) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else "(no log)"

    def ready(self) -> bool:
        """Whether it answers /-/ready (fails the test if it exited)."""
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        return get(f"{self.url}/-/ready", timeout=1.0)[0] == 200

    def stop(self) -> None:
        """SIGTERM to the recorded PID, SIGKILL if it does not go."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start(name: str, argv: list[str], url: str, log: Path) -> Server:
    """Start a binary with its output in `log`."""
    handle = log.open("wb")
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                   cwd=log.parent)
    finally:
        handle.close()
    return Server(name, url, process, log, time.monotonic())


@dataclass
class Stack:
    """The exporter, Prometheus and Alertmanager, all ready."""

    exporter: Exporter
    prometheus: Server
    alertmanager: Server

    def query(self, query: str) -> list[Any]:
        """The instant vector Prometheus answers now (empty if it answered an error)."""
        status, body = get(f"{self.prometheus.url}/api/v1/query?query={urllib.parse.quote(query)}")
        return list(json.loads(body)["data"]["result"]) if status == 200 else []

    def answers(self, query: str, value: float, within: float = 15.0) -> None:
        """Wait until Prometheus answers `query` with one series of `value`."""
        last: list[Any] = []

        def seen() -> bool:
            last[:] = self.query(query)
            return len(last) == 1 and math.isclose(float(last[0]["value"][1]), value)

        wait_for(f"Prometheus answering {query} = {value}", seen, time.monotonic() + within,
                 lambda: f"last answer {last}")

    def scraped(self, region: str, value: float, within: float = 15.0) -> None:
        """Wait until Prometheus answers `value` for the region's gauge."""
        self.answers(f'app_error_ratio{{region="{region}"}}', value, within)

    def post_alert(self, labels: dict[str, str], lasts: timedelta = timedelta(hours=1)) -> None:
        """Post one firing alert to Alertmanager, ending `lasts` from now, and wait until it is listed."""
        now = datetime.now(UTC)
        alert = [{"labels": labels, "annotations": {"summary": "error ratio above 1%"},
                  "startsAt": now.isoformat(), "endsAt": (now + lasts).isoformat()}]
        request = urllib.request.Request(f"{self.alertmanager.url}/api/v2/alerts", data=json.dumps(alert).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with LOCAL.open(request, timeout=5) as response:
            assert response.status == 200
        filters = "&".join("filter=" + urllib.parse.quote(f'{k}="{v}"') for k, v in labels.items())
        listed: list[Any] = []

        def seen() -> bool:
            status, body = get(f"{self.alertmanager.url}/api/v2/alerts?active=true&{filters}")
            listed[:] = json.loads(body) if status == 200 else []
            return len(listed) == 1

        wait_for(f"Alertmanager listing the alert {labels}", seen, time.monotonic() + 10, lambda: str(listed))


@contextmanager
def running(root: Path) -> Iterator[Stack]:
    """Exporter, Prometheus and Alertmanager on loopback ports, ready; all stopped at the end."""
    for binary, package in ((PROMETHEUS, "prometheus"), (ALERTMANAGER, "prometheus-alertmanager")):
        if not binary.exists():
            unavailable(f"{binary} is missing (apt-get install -y {package})")
    exporter = Exporter()
    servers: list[Server] = []
    try:
        prom_port, am_port = free_port(), free_port()
        (root / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: app\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
        (root / "alertmanager.yml").write_text(
            'route: {receiver: "null", group_wait: 1h, group_interval: 1h, repeat_interval: 24h}\n'
            'receivers: [{name: "null"}]\n')
        servers.append(start("Prometheus", [
            str(PROMETHEUS), f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
        ], f"http://127.0.0.1:{prom_port}", root / "prometheus.log"))
        servers.append(start("Alertmanager", [
            str(ALERTMANAGER), f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn",
        ], f"http://127.0.0.1:{am_port}", root / "alertmanager.log"))
        deadline = time.monotonic() + 30
        for server in servers:
            wait_for(f"{server.name} ready", server.ready, deadline, server.log_tail)
            server.ready_after = time.monotonic() - server.started
        print(", ".join(f"{s.name} ready after {s.ready_after:.2f}s" for s in servers))
        yield Stack(exporter, servers[0], servers[1])
    finally:
        for server in servers:
            server.stop()
        exporter.close()
