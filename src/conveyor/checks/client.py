"""HTTP as checks make it: one client (httpx) and one policy, whichever way the connection goes.

A host check's GET goes out from the host: from this machine for a local host, through a direct-tcpip
channel of its SSH connection for an SSH host (transport/tunnel.py gives httpx those channels). Prometheus
and Alertmanager are asked from the controller. The same rules hold on every transport:

- redirects are followed, up to MAX_REDIRECTS, and the final answer is judged; more is an error. A check
  that expects a 3xx status itself is judged on the first answer (`follow_redirects=False`);
- at most `limit` bytes of a body are read (HOST_BODY, 1 MiB, for a host check; QUERY_BODY for a query's
  answer), asked for uncompressed; the rest is left unread;
- `timeout` bounds the whole exchange: connecting, TLS, every redirect and the body;
- https certificates are verified for the name in the URL against this machine's trust store (the system's,
  or the one SSL_CERT_FILE / SSL_CERT_DIR name). TLS runs on the controller also through an SSH channel, so
  one trust store serves every transport: a self-signed certificate fails until it is trusted there;
- a host check uses no proxy (it is made from the host); the controller's queries use the proxy the
  environment names (HTTPS_PROXY, NO_PROXY), except for loopback, whose answer must come from this machine;
- credentials in a URL (https://user:password@host/) are sent as basic authentication, never printed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from conveyor.errors import TransportError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HOST_BODY",
    "MAX_REDIRECTS",
    "QUERY_BODY",
    "Fetch",
    "Network",
    "ask",
    "get",
    "host_get",
    "http_fetch",
    "redact",
    "trust_store",
]

MAX_REDIRECTS = 5
HOST_BODY = 1 << 20
"""The most of a host check's body that is read: `contains` and `matches` look at this much."""
QUERY_BODY = 16 << 20
"""The most of a query's answer that is read: a result larger than this is not a signal but a mistake."""

Fetch = Callable[[str, float], Awaitable[tuple[int, bytes]]]
"""GET a URL with a timeout in seconds: (HTTP status, body). Raises TransportError when nothing answers."""

Network = Callable[[ssl.SSLContext], "httpx.AsyncBaseTransport"]
"""How a GET reaches its server, given the TLS context to verify with: an httpx transport (an SSH host's
channels). None: this machine's own network."""

_HEADERS = {"User-Agent": "conveyor-check", "Accept-Encoding": "identity"}


def redact(url: str) -> str:
    """A URL without any user:password part, fit for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=4)
def _trust(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # Loading the system's authorities takes a while: once per trust store, not once per GET.
    return ssl.create_default_context()


def trust_store() -> ssl.SSLContext:
    """The TLS context certificates are verified with: the system's authorities, or SSL_CERT_FILE's/_DIR's."""
    return _trust(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


def _why(exc: BaseException) -> str:
    """What went wrong, in a few words, from the deepest cause that says something."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for cause in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"its certificate is not trusted here: {cause.verify_message}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    for cause in seen:
        text = str(cause).split(" (_ssl.c", 1)[0].strip()
        if text:
            return text.splitlines()[0]
    return type(exc).__name__


async def get(url: str, timeout: float, *, limit: int, follow_redirects: bool = True,
              network: Network | None = None, proxies: bool = False,
              headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """GET `url` by the module's policy: (final status, at most `limit` bytes of its body), also for HTTP
    error statuses. TransportError when no answer comes within `timeout` seconds, or none can be had."""
    if urlsplit(url).scheme not in {"http", "https"}:
        raise TransportError(f"GET {redact(url)}: only http:// and https:// URLs are fetched")
    import httpx

    context = trust_store()
    transport = network(context) if network is not None else None
    try:
        async with asyncio.timeout(timeout), httpx.AsyncClient(
                transport=transport, verify=context, follow_redirects=follow_redirects,
                max_redirects=MAX_REDIRECTS, timeout=timeout, headers={**_HEADERS, **(headers or {})},
                trust_env=proxies and not _is_loopback(urlsplit(url).hostname)) as client, \
                client.stream("GET", url) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= limit:
                    break  # the rest stays unread: the connection is closed with the stream
            return response.status_code, bytes(body[:limit])
    except (TimeoutError, httpx.TimeoutException):
        raise TransportError(f"GET {redact(url)}: no answer within {timeout:g}s") from None
    except httpx.TooManyRedirects as exc:
        raise TransportError(f"GET {redact(url)}: more than {MAX_REDIRECTS} redirects") from exc
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise TransportError(f"GET {redact(url)}: {_why(exc)}") from exc


async def host_get(url: str, timeout: float, *, follow_redirects: bool = True,
                   network: Network | None = None) -> tuple[int, str]:
    """A host check's GET: (status, the first HOST_BODY bytes of the body as text), by the module's policy."""
    status, body = await get(url, timeout, limit=HOST_BODY, follow_redirects=follow_redirects, network=network)
    return status, body.decode("utf-8", "replace")


async def http_fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """The controller's GET of a JSON API (Prometheus, Alertmanager): (status, body), also for HTTP error
    statuses; TransportError when the server cannot be reached or does not answer within `timeout` seconds."""
    return await get(url, timeout, limit=QUERY_BODY, proxies=True, headers={"Accept": "application/json"})


async def ask(fetch: Fetch, url: str, timeout: float, what: str) -> tuple[Any, str | None]:
    """GET and decode JSON: (document, None), or (None, why `what` could not be asked) — never an exception."""
    try:
        # An injected fetch may not honour the timeout; we do, with a little slack for the server's own.
        status, body = await asyncio.wait_for(fetch(url, timeout), timeout + min(timeout, 1.0))
    except TransportError as exc:
        return None, f"{what} cannot be asked: {exc.message}"
    except TimeoutError:
        return None, f"{what} cannot be asked: no answer to GET {redact(url)} within {timeout:g}s"
    except OSError as exc:
        return None, f"{what} cannot be asked: GET {redact(url)}: {exc}"
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if status != 200:
        error = document.get("error") if isinstance(document, dict) else None
        text = str(error) if error else body[:200].decode("utf-8", "replace").strip()
        return None, f"{what} answered HTTP {status}" + (f": {text}" if text else "")
    if document is None:
        return None, f"{what} answered something that is not JSON: {body[:120].decode('utf-8', 'replace')!r}"
    return document, None
