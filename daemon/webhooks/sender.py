"""The sending thread: delivers queued events, oldest first, retrying while a receiver fails.

It runs in the supervisor's process beside the main loop and shares nothing
with it but this object's lock: the loop hands events in (`submit`), takes
the bound's victims out (`discard`) and collects what was delivered
(`delivered`) to remove from the journal. The thread never touches the
journal, so the journal keeps its one thread, and nothing the receiver does
(refuse, hang, answer slowly) reaches the loop: every attempt is bounded by
the timeout, and only this thread waits for it.

Backoff is per receiver (daemon.webhooks.backoff): while one is down, a
single attempt per interval probes it, and events for other receivers go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from daemon.journal.interface import WebhookEvent
from daemon.observing.metrics import Metrics
from daemon.settings import OutputSettings
from daemon.webhooks.backoff import parse_retry_after, retry_delay
from daemon.webhooks.posting import Answer, post_event
from daemon.webhooks.urls import redact_url

log = structlog.get_logger(__name__)

Post = Callable[[WebhookEvent, float], Answer]


@dataclass(slots=True)
class Receiver:
    """One URL's recent luck: failures in a row, and when it may be tried again (monotonic)."""

    failures: int = 0
    not_before: float = 0.0


class WebhookSender:
    def __init__(
        self,
        metrics: Metrics,
        *,
        timeout: float,
        backoff_cap: float,
        limit: int,
        post: Post = post_event,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.timeout = timeout
        self.backoff_cap = backoff_cap
        self.limit = limit  # the outbox's bound, which the journal keeps
        self._post = post
        self._clock = clock
        self._wall = wall
        self._changed = threading.Condition()
        # Oldest first (dicts keep insertion order; a resubmitted key moves to the end).
        self._events: dict[str, WebhookEvent] = {}
        self._receivers: dict[str, Receiver] = {}
        self._delivered: list[str] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        metrics.webhook_queue_depth.set_function(self.depth)
        metrics.webhook_oldest_age.set_function(self.oldest_age)

    @classmethod
    def for_settings(cls, metrics: Metrics, outputs: OutputSettings) -> WebhookSender:
        sender = cls(metrics, timeout=0.0, backoff_cap=0.0, limit=0)
        sender.configure(outputs)
        return sender

    def configure(self, outputs: OutputSettings) -> None:
        """Take the [outputs] webhook settings (at start, and after a SIGHUP)."""
        self.timeout = outputs.webhook_timeout_seconds
        self.backoff_cap = outputs.webhook_backoff_cap_seconds
        self.limit = outputs.webhook_queue_limit

    # --- called from the main loop (and the HTTP thread, for the gauges) -------

    def start(self) -> None:
        self._thread.start()

    def submit(self, event: WebhookEvent, dropped: Sequence[WebhookEvent] = ()) -> None:
        """Deliver this event (replacing a waiting one with its key), and give up the `dropped`.

        `dropped` are the oldest events the journal removed to stay within the
        bound when it stored this one. Dropping beats refusing the new event
        or waiting for room: the newest outcomes are the ones a receiver is
        likeliest to act on, and nothing may hold up OCR while a receiver is
        down for days; the log line names each key, so it can be replayed.
        """
        with self._changed:
            for old in dropped:
                self._events.pop(old.key, None)
            self._events.pop(event.key, None)
            self._events[event.key] = event
            self._changed.notify()
        self.metrics.webhooks_queued.inc()
        for old in dropped:
            self.metrics.webhooks_dropped.inc()
            log.warning(
                "webhook.dropped",
                key=old.key,
                url=redact_url(old.url),
                queued_at=old.queued_at,
                reason=f"more than webhook_queue_limit={self.limit} events waiting",
            )

    def resume(self, events: Sequence[WebhookEvent]) -> None:
        """At start: the events a previous run left undelivered (not counted as queued again)."""
        with self._changed:
            for event in events:
                self._events[event.key] = event
            self._changed.notify()
        if events:
            log.info("webhook.resumed", waiting=len(events))

    def delivered(self) -> list[str]:
        """The keys accepted by their receivers since the last call."""
        with self._changed:
            keys, self._delivered = self._delivered, []
        return keys

    def depth(self) -> float:
        with self._changed:
            return float(len(self._events))

    def oldest_age(self) -> float:
        """Seconds the oldest waiting event has waited (0 with none): it grows while a receiver fails."""
        with self._changed:
            oldest = min((event.queued_at for event in self._events.values()), default=None)
        return 0.0 if oldest is None else max(self._wall() - oldest, 0.0)

    def retry_at(self, url: str) -> float | None:
        """When (on the monotonic clock) the receiver at `url` may be tried again; None when not held back."""
        with self._changed:
            receiver = self._receivers.get(url)
            return receiver.not_before if receiver is not None and receiver.failures else None

    def stop(self, wait: float) -> None:
        """Stop after the attempt in flight, waiting at most `wait` seconds for it.

        Events not delivered stay in the journal for the next start.
        """
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(wait)

    # --- the thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._changed:
                event = self._next_due()
                while event is None and not self._stopping:
                    self._changed.wait(self._seconds_to_next())
                    event = self._next_due()
                if self._stopping:
                    return
                assert event is not None
            try:
                answer = self._post(event, self.timeout)
            except Exception as error:  # a bug must not end the thread: the event waits instead
                log.exception("webhook.post_error", key=event.key)
                answer = Answer(None, "connection", f"{type(error).__name__}: {error}")
            self._record(event, answer)

    def _next_due(self) -> WebhookEvent | None:
        now = self._clock()
        for event in self._events.values():
            receiver = self._receivers.get(event.url)
            if receiver is None or receiver.not_before <= now:
                return event
        return None

    def _seconds_to_next(self) -> float | None:
        """How long nothing is due (None: nothing is waiting at all)."""
        urls = {event.url for event in self._events.values()}
        if not urls:
            return None
        now = self._clock()
        return max(min(self._receivers[url].not_before for url in urls) - now, 0.0)

    def _record(self, event: WebhookEvent, answer: Answer) -> None:
        with self._changed:
            receiver = self._receivers.setdefault(event.url, Receiver())
            if answer.delivered:
                receiver.failures, receiver.not_before = 0, 0.0
                # Unless it was queued afresh meanwhile (a newer body with this key).
                if self._events.get(event.key) is event:
                    del self._events[event.key]
                self._delivered.append(event.key)
            else:
                receiver.failures += 1
                retry_after = parse_retry_after(answer.retry_after, self._wall())
                delay = retry_delay(receiver.failures, self.backoff_cap, retry_after)
                receiver.not_before = self._clock() + delay
            waiting = len(self._events)
        if answer.delivered:
            self.metrics.webhooks_delivered.inc()
            log.info(
                "webhook.delivered", key=event.key, url=redact_url(event.url), status=answer.status
            )
            return
        self.metrics.webhook_retries.labels(reason=answer.reason).inc()
        log.warning(
            "webhook.retry",
            key=event.key,
            url=redact_url(event.url),
            reason=answer.reason,
            status=answer.status,
            error=answer.detail,
            failures_in_a_row=receiver.failures,
            retry_in_seconds=round(delay, 3),
            retry_after=retry_after,
            waiting=waiting,
        )
