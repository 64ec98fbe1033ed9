"""The sending thread: oldest first, per-receiver backoff on a clock the test moves, drops, stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from daemon.journal.interface import WebhookEvent
from daemon.observing.metrics import Metrics
from daemon.webhooks.posting import Answer
from daemon.webhooks.sender import Post, WebhookSender
from tests.supervising.fakes import FakeClock

A = "http://user:s3cret@a.example/hook"
B = "http://b.example/hook"
WAIT = 30.0  # seconds a test waits for the thread before it fails

OK = Answer(200, "ok")
REFUSED = Answer(None, "connection", "Connection refused")


class ScriptedReceivers:
    """post_event's stand-in: answers from a script per URL (the last answer repeats), recording calls."""

    def __init__(self, script: dict[str, list[Answer]]) -> None:
        self.script = script
        self.calls: list[tuple[str, str]] = []  # (url, key)
        self._changed = threading.Condition()

    def __call__(self, event: WebhookEvent, timeout: float) -> Answer:
        with self._changed:
            self.calls.append((event.url, event.key))
            answers = self.script[event.url]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            self._changed.notify_all()
            return answer

    def wait_calls(self, count: int) -> list[tuple[str, str]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.calls) >= count, WAIT), self.calls
            return list(self.calls)


def event(key: str, url: str = A, queued_at: float = 100.0) -> WebhookEvent:
    return WebhookEvent(key=key, url=url, body="{}", queued_at=queued_at)


def wait_delivered(sender: WebhookSender, count: int) -> list[str]:
    """The keys the sender reports delivered, once there are `count` of them."""
    keys: list[str] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        keys += sender.delivered()
        if len(keys) >= count:
            return keys
        time.sleep(0.01)
    raise AssertionError(f"delivered {keys}, wanted {count}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def made() -> Iterator[list[WebhookSender]]:
    """The senders a test makes, stopped when it ends."""
    senders: list[WebhookSender] = []
    yield senders
    for sender in senders:
        sender.stop(5.0)


def make(made: list[WebhookSender], post: Post, clock: FakeClock) -> WebhookSender:
    sender = WebhookSender(
        Metrics(),
        timeout=5.0,
        backoff_cap=30.0,
        limit=100,
        post=post,
        clock=clock,
        wall=lambda: 160.0,
    )
    made.append(sender)
    return sender


def test_events_go_out_oldest_first_and_are_reported_delivered(
    made: list[WebhookSender], clock: FakeClock
) -> None:
    """Each event is POSTed once, in the order submitted, and its key comes back as delivered."""
    post = ScriptedReceivers({A: [OK]})
    sender = make(made, post, clock)
    for key in ("k1", "k2", "k3"):
        sender.submit(event(key))
    sender.start()

    assert wait_delivered(sender, 3) == ["k1", "k2", "k3"]
    assert post.calls == [(A, "k1"), (A, "k2"), (A, "k3")]
    assert sender.metrics.webhooks_delivered._value.get() == 3
    assert sender.metrics.webhooks_queued._value.get() == 3
    assert sender.depth() == 0


def test_a_failing_receiver_is_retried_after_doubling_delays(
    made: list[WebhookSender], clock: FakeClock
) -> None:
    """After the 1st, 2nd, 3rd failure in a row the receiver waits 1, 2, 4 s, then gets the event."""
    post = ScriptedReceivers({A: [REFUSED, REFUSED, REFUSED, OK]})
    sender = make(made, post, clock)
    sender.submit(event("k1"))
    sender.start()

    for attempt, delay in enumerate((1.0, 2.0, 4.0), start=1):
        post.wait_calls(attempt)
        assert sender.retry_at(A) == clock.now + delay
        clock.advance(delay)
        sender.submit(event("k1"))  # wakes the thread (same key: still one event)

    assert wait_delivered(sender, 1) == ["k1"]
    assert post.calls == [(A, "k1")] * 4
    assert sender.retry_at(A) is None
    assert sender.metrics.webhook_retries.labels(reason="connection")._value.get() == 3


def test_retry_after_is_honoured_and_logged_without_the_password(
    made: list[WebhookSender], clock: FakeClock
) -> None:
    """A 503 with Retry-After: 120 holds the receiver back 120 s; the log line hides the password."""
    post = ScriptedReceivers({A: [Answer(503, "status", "busy", "120"), OK]})
    sender = make(made, post, clock)
    with capture_logs() as logs:
        sender.submit(event("k1"))
        sender.start()
        post.wait_calls(1)
        assert sender.retry_at(A) == clock.now + 120.0
        clock.advance(120.0)
        sender.submit(event("k2"))
        assert wait_delivered(sender, 2) == ["k1", "k2"]

    (retry,) = [line for line in logs if line["event"] == "webhook.retry"]
    assert (retry["status"], retry["retry_in_seconds"], retry["key"]) == (503, 120.0, "k1")
    assert retry["url"] == "http://user:***@a.example/hook"
    assert "s3cret" not in repr(logs)


def test_other_receivers_go_on_while_one_backs_off(
    made: list[WebhookSender], clock: FakeClock
) -> None:
    """An event for a working receiver is delivered while an older one waits for a failing receiver."""
    post = ScriptedReceivers({A: [REFUSED], B: [OK]})
    sender = make(made, post, clock)
    sender.submit(event("for-a", A))
    sender.start()
    post.wait_calls(1)
    sender.submit(event("for-b", B))

    assert wait_delivered(sender, 1) == ["for-b"]
    assert sender.depth() == 1 and sender.retry_at(A) == clock.now + 1.0


def test_dropped_events_are_never_sent_and_are_counted_and_logged(
    made: list[WebhookSender], clock: FakeClock
) -> None:
    """Events the journal dropped for room leave the queue, with a metric and a log line each."""
    post = ScriptedReceivers({A: [OK]})
    sender = make(made, post, clock)
    sender.submit(event("k1"))
    sender.submit(event("k2"))
    with capture_logs() as logs:
        sender.submit(event("k3"), dropped=[event("k1")])

    assert sender.depth() == 2
    assert sender.metrics.webhooks_dropped._value.get() == 1
    (line,) = logs[:1]
    assert (line["event"], line["key"], line["url"]) == (
        "webhook.dropped",
        "k1",
        "http://user:***@a.example/hook",
    )
    sender.start()
    assert wait_delivered(sender, 2) == ["k2", "k3"]
    assert [key for _, key in post.calls] == ["k2", "k3"]


def test_the_gauges_show_depth_and_the_oldest_events_age(
    made: list[WebhookSender], clock: FakeClock
) -> None:
    """Queue depth and the oldest event's age (wall clock, as stored) are read at scrape time."""
    sender = make(made, ScriptedReceivers({A: [OK]}), clock)
    registry = sender.metrics.registry
    assert registry.get_sample_value("ocr_inbox_webhook_oldest_event_age_seconds") == 0.0

    sender.resume([event("k1", queued_at=100.0), event("k2", queued_at=150.0)])

    assert registry.get_sample_value("ocr_inbox_webhook_queue_depth") == 2.0
    assert registry.get_sample_value("ocr_inbox_webhook_oldest_event_age_seconds") == 60.0
    assert sender.metrics.webhooks_queued._value.get() == 0  # resumed, not queued again


def test_stop_returns_with_events_undelivered(made: list[WebhookSender], clock: FakeClock) -> None:
    """A stop while the receiver is down ends the thread; the event is not reported delivered."""
    post = ScriptedReceivers({A: [REFUSED]})
    sender = make(made, post, clock)
    sender.submit(event("k1"))
    sender.start()
    post.wait_calls(1)

    sender.stop(5.0)

    assert not sender._thread.is_alive()
    assert sender.delivered() == [] and sender.depth() == 1


def test_an_unexpected_error_in_a_post_leaves_the_thread_running(
    made: list[WebhookSender], clock: FakeClock
) -> None:
    """A post that raises (a bug, not the network) counts as a failed attempt; the event is retried."""
    calls: list[str] = []

    def post(event: WebhookEvent, timeout: float) -> Answer:
        calls.append(event.key)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return OK

    sender = make(made, post, clock)
    with capture_logs() as logs:
        sender.submit(event("k1"))
        sender.start()
        deadline = time.monotonic() + WAIT
        while sender.retry_at(A) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        clock.advance(1.0)
        sender.submit(event("k1"))
        assert wait_delivered(sender, 1) == ["k1"]

    assert calls == ["k1", "k1"]
    assert "webhook.post_error" in [line["event"] for line in logs]
