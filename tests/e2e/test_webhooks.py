"""End to end: completion webhooks to a real HTTP receiver that is down, then failing, then well.

The receiver refuses connections while the daemon finishes two files, the
daemon is killed (-9) and started again, the receiver then holds its first
request while the daemon finishes a third (broken) file, answers 500 with a
Retry-After, and at last 200: every event arrives at least once, with its
key, and none is left in the journal.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.driver import start_daemon, wait_until
from harness.drops import drop_png, faulty_settings
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

CREDENTIALS = "ocr:s3cret-token"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()  # not listening yet: connections are refused
    yield server
    server.close()


def outbox_keys(state: Path) -> list[str]:
    with sqlite3.connect(state / "journal.sqlite3", timeout=30) as db:
        return [row[0] for row in db.execute("SELECT key FROM webhooks ORDER BY seq")]


def test_every_event_arrives_with_its_key_across_an_outage_and_a_restart(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Refused, killed, held, 500, then 200: each finished file's event arrives, keyed, and OCR never waited."""
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    settings = faulty_settings(inbox, state)
    settings["outputs"] = {
        "webhook_url": receiver.url(CREDENTIALS),
        "webhook_backoff_cap_seconds": 0.5,
        "webhook_timeout_seconds": 60.0,
    }
    inbox.mkdir(parents=True)

    first = start_daemon(tmp_path, settings, log_name="first.log")
    try:
        done = [drop_png(inbox / f"page-{index}.png", 1500 + index) for index in range(2)]
        first.wait_for("file.done", count=2)
        first.wait_for("webhook.retry", reason="connection")
        assert first.metric("ocr_inbox_webhook_queue_depth") == 2
        assert first.metric("ocr_inbox_webhooks_queued_total") == 2
    finally:
        first.kill()
    assert len(outbox_keys(state)) == 2  # kill -9 lost none

    receiver.hold()  # the next request is read and left unanswered
    receiver.status, receiver.retry_after = 500, "1"
    receiver.listen()
    second = start_daemon(tmp_path, settings, log_name="second.log")
    try:
        second.wait_for("webhook.resumed", waiting=2)
        wait_until(lambda: receiver.arrived >= 1, timeout=60)
        broken = inbox / "broken.png"
        broken.write_bytes(b"this is not a PNG")
        second.wait_for("file.failed", file=str(broken))
        # The failed file finished while the receiver still held the first request.
        assert receiver.received() == []
        receiver.release()
        receiver.wait_for(2, status=500)
        second.wait_for("webhook.retry", reason="status", status=500, retry_after=1.0)
        receiver.status, receiver.retry_after = 200, None
        wait_until(lambda: second.metric("ocr_inbox_webhook_queue_depth") == 0, timeout=60)
        wait_until(lambda: outbox_keys(state) == [], timeout=30)
        assert second.metric("ocr_inbox_webhooks_delivered_total") >= 3
    finally:
        assert second.stop() == 0

    accepted = {r.body["file"]: r for r in receiver.received() if r.status == 200}
    assert set(accepted) == {str(path) for path in [*done, broken]}
    for request in accepted.values():
        assert request.headers["Idempotency-Key"] == request.body["idempotency_key"]
        assert (
            request.headers["Authorization"]
            == "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()
        )
    assert {r.body["outcome"] for r in accepted.values()} == {"done", "failed"}
    assert accepted[str(broken)].body["outputs"] == {"error": f"{broken}.ocr.error.json"}
    assert accepted[str(done[0])].body["model"] == "fake"
    # Retried events carry the same key each time: a receiver can drop repeats.
    for request in receiver.received():
        assert (
            request.body["idempotency_key"]
            == accepted[request.body["file"]].body["idempotency_key"]
        )
    for daemon in (first, second):
        assert "s3cret" not in daemon.log_text()
