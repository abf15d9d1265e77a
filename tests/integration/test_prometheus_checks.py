"""Analysis checks against a real Prometheus and a real Alertmanager (Debian's packages), on loopback.

The module starts, once: a tiny exporter (a thread serving `/metrics` with `app_error_ratio{region="za"}`,
whose value a test sets), Prometheus scraping it every second, and Alertmanager with a null receiver and
no clustering. Each process is stopped by its recorded PID at the end. Nothing leaves 127.0.0.1.

Needs `apt-get install -y prometheus prometheus-alertmanager`: skipped without them on a developer machine,
failed in CI (env CI set), where .ci/run installs them.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.config.models import AlertsCheck, PrometheusCheck
from conveyor.errors import TransportError
from conveyor.gates.analysis import (
    Scope,
    Verdict,
    http_fetch,
    measure_alerts,
    measure_prometheus,
    preflight_alerts,
    watch,
)

pytestmark = pytest.mark.integration

PROMETHEUS = Path("/usr/bin/prometheus")
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
ZA = Scope(app="www", environment="production", region="za", release="20260101T000000Z-abcdef12")
UK = Scope(app="www", environment="production", region="uk", release="20260101T000000Z-abcdef12")
QUERY = 'app_error_ratio{region="$region"}'

# Only ever talk to this machine, and never through a proxy the environment may name.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _LOCAL.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _wait_for(what: str, condition: Callable[[], bool], deadline: float,
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
    """`/metrics` on 127.0.0.1 with a gauge per region whose value the test sets."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"za": "0.001"}
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                with exporter.lock:
                    lines = [f'app_error_ratio{{region="{region}"}} {value}'
                             for region, value in exporter.values.items()]
                body = ("# HELP app_error_ratio Share of requests that failed.\n# TYPE app_error_ratio gauge\n"
                        + "\n".join(lines) + "\n").encode()
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

    def set(self, region: str, value: str) -> None:
        with self.lock:
            self.values[region] = value

    def close(self) -> None:
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
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else "(no log)"

    def ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        return _get(f"{self.url}/-/ready", timeout=1.0)[0] == 200

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM to the recorded PID
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _start(name: str, argv: list[str], url: str, log: Path) -> Server:
    handle = log.open("wb")
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                   cwd=log.parent)
    finally:
        handle.close()
    return Server(name, url, process, log, time.monotonic())


@dataclass
class Stack:
    exporter: Exporter
    prometheus: Server
    alertmanager: Server

    def scraped(self, region: str, value: float, within: float = 15.0) -> None:
        """Wait until Prometheus answers `value` for the region's gauge."""
        last: list[Any] = []

        def seen() -> bool:
            query = urllib.parse.quote(f'app_error_ratio{{region="{region}"}}')
            status, body = _get(f"{self.prometheus.url}/api/v1/query?query={query}")
            result = json.loads(body)["data"]["result"] if status == 200 else []
            last[:] = result
            return len(result) == 1 and math.isclose(float(result[0]["value"][1]), value)

        _wait_for(f"Prometheus scraping app_error_ratio{{region={region!r}}} = {value}", seen,
                  time.monotonic() + within, lambda: f"last answer {last}")

    def post_alert(self, labels: dict[str, str]) -> None:
        now = datetime.now(UTC)
        alert = [{"labels": labels, "annotations": {"summary": "error ratio above 1%"},
                  "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}]
        request = urllib.request.Request(f"{self.alertmanager.url}/api/v2/alerts", data=json.dumps(alert).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with _LOCAL.open(request, timeout=5) as response:
            assert response.status == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Exporter, Prometheus and Alertmanager on loopback ports, ready; all stopped at the end."""
    for binary, package in ((PROMETHEUS, "prometheus"), (ALERTMANAGER, "prometheus-alertmanager")):
        if not binary.exists():
            _unavailable(f"{binary} is missing (apt-get install -y {package})")
    root = tmp_path_factory.mktemp("monitoring")
    exporter = Exporter()
    servers: list[Server] = []
    try:
        prom_port, am_port = _free_port(), _free_port()
        (root / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: app\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
        (root / "alertmanager.yml").write_text(
            'route: {receiver: "null", group_wait: 1h, group_interval: 1h, repeat_interval: 24h}\n'
            'receivers: [{name: "null"}]\n')
        servers.append(_start("Prometheus", [
            str(PROMETHEUS), f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
        ], f"http://127.0.0.1:{prom_port}", root / "prometheus.log"))
        servers.append(_start("Alertmanager", [
            str(ALERTMANAGER), f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn",
        ], f"http://127.0.0.1:{am_port}", root / "alertmanager.log"))
        deadline = time.monotonic() + 30
        for server in servers:
            _wait_for(f"{server.name} ready", server.ready, deadline, server.log_tail)
            server.ready_after = time.monotonic() - server.started
        print(", ".join(f"{s.name} ready after {s.ready_after:.2f}s" for s in servers))
        yield Stack(exporter, servers[0], servers[1])
    finally:
        for server in servers:
            server.stop()
        exporter.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def prom_check(stack: Stack, **fields: Any) -> PrometheusCheck:
    return PrometheusCheck.model_validate(
        {"prometheus": stack.prometheus.url, "query": QUERY, "condition": "result < 0.01", "timeout": "5s"} | fields)


def alerts_check(stack: Stack, **fields: Any) -> AlertsCheck:
    return AlertsCheck.model_validate(
        {"alerts": stack.alertmanager.url, "matchers": {"region": "$region"}, "timeout": "5s"} | fields)


# -- Prometheus ------------------------------------------------------------------------------------------


def test_a_low_error_ratio_passes(stack: Stack) -> None:
    stack.exporter.set("za", "0.001")
    stack.scraped("za", 0.001)
    m = run(measure_prometheus(prom_check(stack), ZA, fetch=http_fetch))
    assert (m.verdict, m.value, m.scope) == (Verdict.PASS, 0.001, "region za"), m
    assert 'app_error_ratio{instance="127.0.0.1:' in m.detail


def test_a_high_error_ratio_fails_once_prometheus_has_scraped_it(stack: Stack) -> None:
    stack.exporter.set("za", "0.25")
    stack.scraped("za", 0.25)
    m = run(measure_prometheus(prom_check(stack), ZA, fetch=http_fetch))
    assert (m.verdict, m.value) == (Verdict.FAIL, 0.25), m
    assert "0.25 fails result < 0.01" in m.detail
    stack.exporter.set("za", "0.001")


@pytest.mark.parametrize("policy", ["fail", "pass", "inconclusive"])
def test_a_query_matching_nothing_follows_on_empty(stack: Stack, policy: str) -> None:
    m = run(measure_prometheus(prom_check(stack, on_empty=policy), UK, fetch=http_fetch))
    assert (m.verdict, m.value) == (Verdict(policy), None), m
    assert 'app_error_ratio{region="uk"} returned no series' in m.detail


@pytest.mark.parametrize("policy", ["fail", "pass", "inconclusive"])
def test_a_nan_result_follows_on_nan(stack: Stack, policy: str) -> None:
    stack.exporter.set("za", "0.001")
    stack.scraped("za", 0.001)
    m = run(measure_prometheus(prom_check(stack, query=f"{QUERY} * 0 / 0", on_nan=policy), ZA, fetch=http_fetch))
    assert m.verdict == Verdict(policy), m
    assert m.to_json()["value"] == "NaN"


def test_a_query_prometheus_cannot_parse_is_inconclusive_with_its_reason(stack: Stack) -> None:
    m = run(measure_prometheus(prom_check(stack, query="sum(app_error_ratio"), ZA, fetch=http_fetch))
    assert m.verdict is Verdict.INCONCLUSIVE, m
    assert "answered HTTP 400" in m.detail
    assert "parse error" in m.detail


def test_an_unreachable_prometheus_is_inconclusive(stack: Stack) -> None:
    check = prom_check(stack, prometheus=f"http://127.0.0.1:{_free_port()}", on_empty="pass")
    m = run(measure_prometheus(check, ZA, fetch=http_fetch))
    assert m.verdict is Verdict.INCONCLUSIVE, m
    assert "cannot be asked" in m.detail


def test_http_fetch_reports_a_closed_port_as_a_transport_error() -> None:
    port = _free_port()
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        run(http_fetch(f"http://127.0.0.1:{port}/api/v1/query", 2))


def test_http_fetch_returns_error_statuses_and_sends_url_credentials() -> None:
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"status":"error","error":"boom"}'
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        status, body = run(http_fetch(f"http://reader:p%40ss@127.0.0.1:{port}/api/v1/query?query=up", 5))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert (status, body) == (503, b'{"status":"error","error":"boom"}')
    assert seen == [("/api/v1/query?query=up", "Basic cmVhZGVyOnBAc3M=")]  # reader:p@ss


def test_a_watch_on_real_time_stops_at_the_first_failure(stack: Stack) -> None:
    stack.exporter.set("za", "0.5")
    stack.scraped("za", 0.5)
    seen: list[Any] = []
    started = time.monotonic()
    result = run(watch([prom_check(stack, duration="10s", interval="0.5s", failure_limit=1)], ZA,
                       clock=time.monotonic, sleep=asyncio.sleep, fetch=http_fetch, on_measurement=seen.append))
    assert result.verdict is Verdict.FAIL, result.reason
    assert [m.verdict for m in seen] == [Verdict.FAIL, Verdict.FAIL]
    assert time.monotonic() - started < 5
    stack.exporter.set("za", "0.001")
    stack.scraped("za", 0.001)
    result = run(watch([prom_check(stack, count=3, interval="0.3s")], ZA, clock=time.monotonic, sleep=asyncio.sleep,
                       fetch=http_fetch))
    assert result.verdict is Verdict.PASS, result.reason
    assert len(result.measurements) == 3


# -- Alertmanager ------------------------------------------------------------------------------------------


def test_an_active_alert_for_the_region_fails_and_is_named(stack: Stack) -> None:
    assert run(measure_alerts(alerts_check(stack), ZA, fetch=http_fetch)).verdict is Verdict.PASS
    stack.post_alert({"alertname": "HighErrorRate", "region": "za", "severity": "page"})
    m = run(measure_alerts(alerts_check(stack), ZA, fetch=http_fetch))
    assert (m.verdict, m.value) == (Verdict.FAIL, 1.0), m
    assert m.detail == '1 active alert: HighErrorRate{region="za", severity="page"}'
    assert m.condition == 'no active alert matching {region="za"}'

    other = run(measure_alerts(alerts_check(stack), UK, fetch=http_fetch))
    assert (other.verdict, other.value) == (Verdict.PASS, 0.0), other

    found = run(preflight_alerts([prom_check(stack), alerts_check(stack)], ZA, fetch=http_fetch))
    assert [m.verdict for m in found] == [Verdict.FAIL]
    assert "HighErrorRate" in found[0].detail


def test_an_unreachable_alertmanager_is_inconclusive(stack: Stack) -> None:
    check = alerts_check(stack, alerts=f"http://127.0.0.1:{_free_port()}")
    m = run(measure_alerts(check, ZA, fetch=http_fetch))
    assert m.verdict is Verdict.INCONCLUSIVE, m
    assert m.detail.startswith("Alertmanager at http://127.0.0.1:")
