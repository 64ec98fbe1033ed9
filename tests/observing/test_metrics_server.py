"""The HTTP endpoints, over real sockets with urllib."""

from __future__ import annotations

import gzip
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from daemon.observing.metrics import Metrics
from daemon.observing.metrics_server import MetricsServer, MetricsServerNotStarted

TIMEOUT = 30  # seconds; generous because the test machine is shared and loaded


@dataclass
class FlippableReadiness:
    """A readiness probe the test flips, safe to call from the server's threads."""

    ready: bool = False
    reason: str = "worker loading model test-model"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, ready: bool, reason: str) -> None:
        with self.lock:
            self.ready, self.reason = ready, reason

    def __call__(self) -> tuple[bool, str]:
        with self.lock:
            return self.ready, self.reason


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def get(port: int, path: str, headers: dict[str, str] | None = None) -> Response:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return Response(reply.status, dict(reply.headers.items()), reply.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers.items()), error.read())


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def readiness() -> FlippableReadiness:
    return FlippableReadiness()


@pytest.fixture
def server(metrics: Metrics, readiness: FlippableReadiness) -> Iterator[MetricsServer]:
    started = MetricsServer(metrics.registry, readiness, port=0)
    started.start()
    yield started
    started.stop()


def test_port_zero_binds_a_free_port(server: MetricsServer) -> None:
    """Port 0 resolves to the real bound port, which then answers."""
    assert server.port > 0
    assert get(server.port, "/healthz").status == 200


def test_metrics_serves_the_registry_as_prometheus_text(
    server: MetricsServer, metrics: Metrics
) -> None:
    """/metrics returns the text exposition of the registry, with values the daemon set."""
    metrics.files.labels(inbox="scans", outcome="done").inc(3)
    metrics.queue_depth.set(7)

    reply = get(server.port, "/metrics")

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = reply.body.decode()
    assert 'ocr_inbox_files_total{inbox="scans",outcome="done"} 3.0' in text
    assert "ocr_inbox_queue_depth 7.0" in text
    assert "ocr_inbox_build_info{" in text


def test_metrics_negotiates_openmetrics(server: MetricsServer) -> None:
    """A scraper that asks for OpenMetrics gets it, terminated by # EOF."""
    reply = get(server.port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    assert reply.body.decode().rstrip().endswith("# EOF")


def test_metrics_gzips_when_accepted(server: MetricsServer) -> None:
    """Accept-Encoding: gzip gets a gzip body that decompresses to the exposition."""
    reply = get(server.port, "/metrics", {"Accept-Encoding": "gzip"})

    assert reply.headers.get("Content-Encoding") == "gzip"
    assert b"ocr_inbox_build_info" in gzip.decompress(reply.body)


def test_metrics_name_filter_restricts_the_output(server: MetricsServer) -> None:
    """?name[]=... returns only the named series, as prometheus_client's server does."""
    reply = get(server.port, "/metrics?name[]=ocr_inbox_queue_depth")

    text = reply.body.decode()
    assert "ocr_inbox_queue_depth 0.0" in text
    assert "ocr_inbox_build_info" not in text


def test_healthz_is_ok_while_the_process_runs(
    server: MetricsServer, readiness: FlippableReadiness
) -> None:
    """/healthz answers 200 even when the daemon is not ready."""
    readiness.set(False, "worker down")

    reply = get(server.port, "/healthz")

    assert (reply.status, reply.body) == (200, b"ok\n")


def test_readyz_follows_the_probe(server: MetricsServer, readiness: FlippableReadiness) -> None:
    """/readyz is 200 while the probe says ready and 503 with its reason once it does not."""
    readiness.set(True, "")
    assert get(server.port, "/readyz").status == 200

    readiness.set(False, "worker loading model qwen2-vl-2b")
    reply = get(server.port, "/readyz")

    assert reply.status == 503
    assert reply.body.decode().strip() == "worker loading model qwen2-vl-2b"

    readiness.set(True, "serving rapid")
    reply = get(server.port, "/readyz")
    assert (reply.status, reply.body.decode().strip()) == (200, "ready: serving rapid")


def test_readyz_is_503_when_the_probe_raises(metrics: Metrics) -> None:
    """A probe that raises makes /readyz answer 503 with the error, not drop the connection."""

    def broken() -> tuple[bool, str]:
        raise LookupError("no worker slot 0")

    server = MetricsServer(metrics.registry, broken, port=0)
    server.start()
    try:
        reply = get(server.port, "/readyz")
    finally:
        server.stop()

    assert reply.status == 503
    assert "no worker slot 0" in reply.body.decode()


def test_unknown_path_is_404(server: MetricsServer) -> None:
    """Any other path answers 404."""
    assert get(server.port, "/").status == 404
    assert get(server.port, "/metrics/extra").status == 404


def test_head_answers_without_a_body(server: MetricsServer) -> None:
    """HEAD /healthz gets the status and length but no body."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/healthz", method="HEAD")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Length"] == "3"
        assert reply.read() == b""


def test_port_before_start_is_an_error(metrics: Metrics) -> None:
    """Reading the port of a server that was never started raises MetricsServerNotStarted."""
    server = MetricsServer(metrics.registry, lambda: (True, ""), port=0)

    with pytest.raises(MetricsServerNotStarted):
        _ = server.port


def test_stop_closes_the_socket(metrics: Metrics) -> None:
    """After stop() the port refuses connections, and a second stop() is harmless."""
    server = MetricsServer(metrics.registry, lambda: (True, ""), port=0)
    server.start()
    port = server.port
    assert get(port, "/healthz").status == 200

    server.stop()
    server.stop()

    with pytest.raises(urllib.error.URLError):
        get(port, "/healthz")
