"""One table of HTTP checks, measured from a local host and from a real SSH host (tests/sshfleet): the same
answers, the same verdicts, whichever way the GET goes (docs/checks.md, "HTTP checks").

The servers listen on 127.0.0.1, which is the fleet hosts' loopback too: over SSH the GET goes out from the
host's side of its connection (a direct-tcpip channel), locally from this machine. Every case is measured
through the engine's own glue (`OnHost`) and the `http` kind of the check registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from conveyor.checks import HttpCheck, Measurement, Place, Scope, Verdict, kind_of  # noqa: E402
from conveyor.config.models import SSH_DEFAULTS, SSHSettings  # noqa: E402
from conveyor.engine.checking import OnHost  # noqa: E402
from conveyor.inventory import Host  # noqa: E402
from conveyor.transport.base import Completed, Connection, Transport  # noqa: E402
from conveyor.transport.clients import SSHClients  # noqa: E402
from conveyor.transport.local import LocalTransport  # noqa: E402
from sshfleet import Fleet, missing_requirements  # noqa: E402

pytestmark = pytest.mark.integration

BIG = 2 << 20  # a body twice the limit: "head" at its start, "tail" past the first MiB
TIMEOUT = 1.0


class Handler(BaseHTTPRequestHandler):
    """The health endpoints of the table."""

    server: Server

    def do_GET(self) -> None:
        routes: dict[str, Callable[[], None]] = {
            "/ok": lambda: self.answer(200, b"status: ok\n"),
            "/fail": lambda: self.answer(500, b"broken\n"),
            "/moved": lambda: self.answer(302, b"", location="/ok"),
            "/gone-for-good": lambda: self.answer(301, b"", location="/ok"),
            "/loop": lambda: self.answer(302, b"", location="/loop"),
            "/to-tls": lambda: self.answer(302, b"", location=f"https://127.0.0.1:{self.server.tls_port}/ok"),
            "/big": lambda: self.answer(200, b"head " + b"x" * BIG + b" tail\n"),
        }
        # A client that read what it wanted (at most 1 MiB) hangs up on the rest.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            routes.get(self.path, lambda: self.answer(404, b"no such page\n"))()

    def answer(self, status: int, body: bytes, location: str | None = None) -> None:
        self.server.paths.append(self.path)
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.tls = tls
        self.tls_port = 0
        self.paths: list[str] = []

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        sock.settimeout(5)
        return self.tls.wrap_socket(sock, server_side=True), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refuses our certificate hangs up mid-handshake: that is the point of the case

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself (no public authority vouches for it), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Servers:
    plain: Server
    tls: Server
    silent: socket.socket  # listens, and never answers
    closed: int  # a port nothing listens on
    cert: Path

    def url(self, name: str) -> str:
        host, path = name.split(":", 1)
        port = {"plain": self.plain.port, "tls": self.tls.port, "silent": self.silent.getsockname()[1],
                "closed": self.closed}[host]
        scheme = "https" if host == "tls" else "http"
        return f"{scheme}://127.0.0.1:{port}{path}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    plain, tls = Server(), Server(context)
    plain.tls_port = tls.port
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (plain, tls)]
    for thread in threads:
        thread.start()
    try:
        yield Servers(plain, tls, silent, closed, cert)
    finally:
        for server in (plain, tls):
            server.shutdown()
            server.server_close()
        silent.close()
        for thread in threads:
            thread.join(timeout=5)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if missing_requirements():
        pytest.skip(f"the sshd fleet needs {', '.join(missing_requirements())} (see tests/sshfleet)")
    with Fleet(tmp_path_factory.mktemp("fleet"), 1) as started:
        yield started


HOST = Host(name="h01", environment="prod", region="za", role="web", address="127.0.0.1")
SCOPE = Scope(app="www", environment="prod", region="za", release="R1", host="h01")


def transport_for(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Transport, Host]:
    if name == "local":
        return LocalTransport(tmp_path / "hosts"), HOST
    fleet: Fleet = request.getfixturevalue("fleet")
    (member,) = fleet.hosts
    settings = SSH_DEFAULTS.merged(SSHSettings.model_validate({
        "user": "root", "identity_file": str(fleet.client_key), "known_hosts": "strict",
        "known_hosts_file": str(fleet.known_hosts), "connect_timeout": 10,
        "client": "openssh" if name == "openssh" else "asyncssh"}))
    return SSHClients(lambda _host: settings), Host(name=member.name, environment="prod", region="za",
                                                      role="web", address="127.0.0.1", port=member.port)


def measure(transport: Transport, host: Host, check: HttpCheck, *, verify: bool = False) -> tuple[Measurement, float]:
    """Measure `check` from `host` as a bake does (or verify it, retries included): (measurement, seconds)."""

    async def main() -> tuple[Measurement, float]:
        connection = await transport.connect(host)

        async def connected() -> Connection:
            return connection

        async def no_commands(command: str, timeout: float) -> Completed:
            raise AssertionError("an http check runs no command")

        place = Place(SCOPE, host=OnHost(no_commands, connected, "/srv/www/releases/R1", {}))
        kind = kind_of(check)
        started = time.monotonic()
        try:
            assert kind.verify is not None
            measured = await (kind.verify if verify else kind.measure)(check, place)
        finally:
            await connection.close()
            await transport.aclose()
        return measured, time.monotonic() - started

    return asyncio.run(main())


# (case, where, check fields, verdict, status, what the detail says)
CASES: list[tuple[str, str, dict[str, Any], Verdict, int | None, str]] = [
    ("200", "plain:/ok", {"contains": "ok"}, Verdict.PASS, 200, "ms"),
    ("500", "plain:/fail", {}, Verdict.FAIL, 500, "answered 500, expected 200"),
    ("a redirect is followed to the final answer", "plain:/moved", {"contains": "ok"}, Verdict.PASS, 200, "ms"),
    ("an expected redirect is judged as it is", "plain:/gone-for-good", {"expect": 301}, Verdict.PASS, 301, "ms"),
    ("more than 5 redirects", "plain:/loop", {}, Verdict.FAIL, None, "more than 5 redirects"),
    ("https with a self-signed certificate is refused", "tls:/ok", {}, Verdict.FAIL, None,
     "its certificate is not trusted here"),
    ("only the first MiB of a body is read", "plain:/big", {"contains": "head"}, Verdict.PASS, 200, "ms"),
    ("what lies past the first MiB is not seen", "plain:/big", {"contains": "tail"}, Verdict.FAIL, 200,
     "without 'tail'"),
    ("a server that never answers times out", "silent:/", {}, Verdict.FAIL, None,
     f"no answer within {TIMEOUT:g}s"),
    ("nothing listens", "closed:/", {}, Verdict.FAIL, None, "refused"),
]
TRANSPORTS = ["local", "ssh", "openssh"]  # ssh: the default client, asyncssh


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("case", "where", "fields", "verdict", "status", "detail"), CASES, ids=[c[0] for c in CASES])
def test_an_http_check_reads_the_same_on_every_transport(
        transport: str, case: str, where: str, fields: dict[str, Any], verdict: Verdict, status: int | None,
        detail: str, servers: Servers, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    check = HttpCheck.model_validate({"http": servers.url(where), "timeout": TIMEOUT, **fields})
    chosen, host = transport_for(transport, request, tmp_path)
    measured, took = measure(chosen, host, check)
    assert (measured.kind, measured.scope, measured.condition) == ("http", "host h01", f"status {check.expect}")
    assert (measured.verdict, measured.value) == (verdict, status), measured.detail
    assert detail in measured.detail
    assert took < TIMEOUT + 2, f"{case} took {took:.1f}s"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_https_passes_once_the_certificate_is_trusted_here(transport: str, servers: Servers,
                                                          request: pytest.FixtureRequest, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS runs on the controller, also over SSH: its trust store (SSL_CERT_FILE here) decides for every host."""
    monkeypatch.setenv("SSL_CERT_FILE", str(servers.cert))
    for where in ("tls:/ok", "plain:/to-tls"):  # directly, and through a redirect from http
        check = HttpCheck.model_validate({"http": servers.url(where), "contains": "ok", "timeout": TIMEOUT})
        measured, _ = measure(*transport_for(transport, request, tmp_path), check)
        assert (measured.verdict, measured.value) == (Verdict.PASS, 200), measured.detail


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_verification_retries_then_names_the_last_failure(transport: str, servers: Servers,
                                                          request: pytest.FixtureRequest, tmp_path: Path) -> None:
    check = HttpCheck.model_validate({"http": servers.url("plain:/fail"), "retries": 2, "interval": "10ms"})
    before = servers.plain.paths.count("/fail")
    measured, _ = measure(*transport_for(transport, request, tmp_path), check, verify=True)
    assert measured.verdict is Verdict.FAIL
    assert measured.detail == f"check failed after 3 attempt(s): {check.http} answered 500, expected 200"
    assert servers.plain.paths.count("/fail") - before == 3

