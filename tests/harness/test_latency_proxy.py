"""The latency proxy the postgres benchmark puts between daemons and the database."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from harness.latency_proxy import LatencyProxy

DELAY = 0.05  # seconds each way


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A plain TCP echo server on a free port, one connection at a time, on a thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                while data := connection.recv(65536):
                    connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    listener.close()


def test_bytes_pass_whole_in_order_and_each_way_late(echo_port: int) -> None:
    """A megabyte goes through and back unchanged, and an answer comes no sooner than two delays."""
    payload = bytes(range(256)) * 4096
    with (
        LatencyProxy(echo_port, DELAY) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as client,
    ):
        sent = time.monotonic()
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        assert time.monotonic() - sent >= 2 * DELAY
        client.sendall(payload)
        received = bytearray()
        while len(received) < len(payload):
            received += client.recv(65536)
        assert bytes(received) == payload


def test_a_database_answers_through_it(pg_url: str) -> None:
    """psycopg reaches the run's PostgreSQL through the proxy; each query's round trip is two delays late."""
    port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = LatencyProxy(port, DELAY).start()
    try:
        with psycopg.connect(proxy.url(pg_url), autocommit=True) as db:
            started = time.monotonic()
            row = db.execute("SELECT 41 + 1").fetchone()
            assert row == (42,)
            assert time.monotonic() - started >= 2 * DELAY
    finally:
        proxy.stop()
    with pytest.raises(ValueError, match="does not name"):
        proxy.url("postgresql://x@db.example:5432/y")


def test_stopping_with_a_connection_open_closes_it_quietly(
    echo_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy stopped under an open connection closes it and logs no asyncio error."""
    proxy = LatencyProxy(echo_port, DELAY).start()
    with socket.create_connection(("127.0.0.1", proxy.port)) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            proxy.stop()
        client.settimeout(5)
        assert client.recv(4) == b""  # closed by the proxy
    assert not [record for record in caplog.records if record.name == "asyncio"]
