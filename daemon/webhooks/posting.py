"""One POST of one event, bounded in time: the receiver's answer, or the reason there was none."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from daemon import __version__
from daemon.journal.interface import WebhookEvent
from daemon.webhooks.urls import without_credentials

USER_AGENT = f"ocr-inbox/{__version__}"
# Enough of an answer to log why it was refused; the rest is not read.
MAX_ANSWER_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: an HTTP status (None when no answer came) and why."""

    status: int | None
    reason: str  # "ok", "status", "timeout" or "connection"
    detail: str = ""
    retry_after: str | None = None  # the Retry-After header as sent

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post_event(event: WebhookEvent, timeout: float) -> Answer:
    """POST the event's body to its URL; never raises for what the network or receiver does.

    `timeout` bounds connecting and every read; redirects are not followed
    (a 3xx is an answer that did not accept the event).
    """
    url, authorization = without_credentials(event.url)
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": event.key,
        "User-Agent": USER_AGENT,
    }
    if authorization is not None:
        headers["Authorization"] = authorization
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        connection.request("POST", target, body=event.body.encode("utf-8"), headers=headers)
        response = connection.getresponse()
        text = response.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
        reason = "ok" if 200 <= response.status < 300 else "status"
        return Answer(
            response.status, reason, text.strip()[:200], response.getheader("Retry-After")
        )
    except TimeoutError as error:
        return Answer(None, "timeout", str(error) or "timed out")
    except (OSError, http.client.HTTPException) as error:
        return Answer(None, "connection", str(error) or type(error).__name__)
    finally:
        connection.close()
