"""One POST against a real HTTP server: headers, body, credentials, and every way it can go wrong."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator

import pytest

from daemon.journal.interface import WebhookEvent
from daemon.webhooks.posting import post_event
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.listen()
    yield server
    server.close()


def event_to(url: str) -> WebhookEvent:
    return WebhookEvent(key="k" * 64, url=url, body=json.dumps({"file": "/a.png"}), queued_at=1.0)


def test_a_post_carries_the_body_key_and_basic_auth(receiver: WebhookReceiver) -> None:
    """The JSON body, the Idempotency-Key header, and user:password as Basic auth reach the server."""
    answer = post_event(event_to(receiver.url("bob:s3cret", "/hook?team=ocr")), timeout=10.0)

    assert (answer.status, answer.reason, answer.delivered) == (200, "ok", True)
    (request,) = receiver.received()
    assert request.path == "/hook?team=ocr"
    assert request.body == {"file": "/a.png"}
    assert request.headers["Idempotency-Key"] == "k" * 64
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:s3cret").decode()


def test_an_error_status_and_its_retry_after_come_back(receiver: WebhookReceiver) -> None:
    """A 503 is not delivered; its Retry-After header is returned for the backoff."""
    receiver.status, receiver.retry_after = 503, "7"

    answer = post_event(event_to(receiver.url()), timeout=10.0)

    assert (answer.status, answer.reason, answer.delivered) == (503, "status", False)
    assert answer.retry_after == "7"


def test_a_refused_connection_is_an_answer_not_an_exception() -> None:
    """Nothing listening: reason "connection", no status."""
    receiver = WebhookReceiver()  # never listens

    answer = post_event(event_to(receiver.url()), timeout=10.0)

    assert (answer.status, answer.reason, answer.delivered) == (None, "connection", False)


def test_a_receiver_that_never_answers_times_out() -> None:
    """A server that accepts and stays silent costs one timeout: reason "timeout"."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody reads or answers
        port = silent.getsockname()[1]
        answer = post_event(event_to(f"http://127.0.0.1:{port}/hook"), timeout=0.3)

    assert (answer.status, answer.reason, answer.delivered) == (None, "timeout", False)
