"""The supervisor's HTTP endpoints: /metrics, /healthz and /readyz.

A standard-library ThreadingHTTPServer in a daemon thread: scrapes are rare
and small, and a web framework would be a dependency for three routes. The
server only reads the registry and calls the readiness probe, so it needs no
lock of its own; prometheus_client's metrics are thread-safe.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

# (ready, reason): the reason is shown in the 503 body, e.g. "worker loading model qwen2-vl-2b".
Readiness = Callable[[], tuple[bool, str]]

Header = tuple[str, str]
_TEXT: list[Header] = [("Content-Type", "text/plain; charset=utf-8")]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464

log = structlog.get_logger(__name__)


class MetricsServerNotStarted(RuntimeError):
    """The server's port was asked for before start() bound it."""


class _EndpointServer(ThreadingHTTPServer):
    """Carries the registry and probe to the handler, which the stdlib builds per request."""

    daemon_threads = True  # a scrape in flight must never hold up the daemon's exit

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, readiness: Readiness
    ) -> None:
        # The class attribute decides the socket family before bind; a host such
        # as "::1" needs IPv6.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.readiness = readiness
        super().__init__(address, _EndpointHandler)


class _EndpointHandler(BaseHTTPRequestHandler):
    server: _EndpointServer
    protocol_version = "HTTP/1.1"  # keep-alive for Prometheus' repeated scrapes
    server_version = "ocr-inbox"
    # A keep-alive connection whose scraper went away would hold its thread
    # forever; Prometheus scrapes far more often than this.
    timeout = 300

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        url = urlsplit(self.path)
        if url.path == "/metrics":
            status, headers, body = self._metrics(parse_qs(url.query))
        elif url.path == "/healthz":
            status, headers, body = HTTPStatus.OK, _TEXT, b"ok\n"
        elif url.path == "/readyz":
            status, headers, body = self._readiness()
        else:
            status, headers, body = HTTPStatus.NOT_FOUND, _TEXT, b"not found\n"
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _metrics(self, params: dict[str, list[str]]) -> tuple[HTTPStatus, list[Header], bytes]:
        # The same negotiation as prometheus_client's own server: OpenMetrics
        # when the scraper asks for it, gzip when it accepts it, name[] filters.
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        registry: Any = self.server.registry
        if "name[]" in params:
            registry = registry.restricted_registry(params["name[]"])
        body = encoder(registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        return HTTPStatus.OK, headers, body

    def _readiness(self) -> tuple[HTTPStatus, list[Header], bytes]:
        try:
            ready, reason = self.server.readiness()
        except Exception as exc:
            # The probe is the supervisor's code running on our thread; if it
            # breaks, the honest answer is "not ready", not a dropped connection.
            log.error("readiness probe failed", error=repr(exc))
            return (
                HTTPStatus.SERVICE_UNAVAILABLE,
                _TEXT,
                f"readiness probe failed: {exc!r}\n".encode(),
            )
        if ready:
            return HTTPStatus.OK, _TEXT, f"ready{': ' + reason if reason else ''}\n".encode()
        return HTTPStatus.SERVICE_UNAVAILABLE, _TEXT, f"{reason or 'not ready'}\n".encode()

    def log_message(self, format: str, *args: Any) -> None:
        # Prometheus scrapes every few seconds; a line per request would drown the journal.
        pass


class MetricsServer:
    """Serves one registry and a readiness probe over HTTP from a daemon thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
    ) -> None:
        self._registry = registry
        self._readiness = readiness
        self._address = (host, port)
        self._server: _EndpointServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (port 0 picks a free port) and serve; OSError if the address is taken."""
        if self._server is not None:
            return
        server = _EndpointServer(self._address, self._registry, self._readiness)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="metrics-http",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with port 0)."""
        if self._server is None:
            raise MetricsServerNotStarted("MetricsServer.port read before start()")
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before start()."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
