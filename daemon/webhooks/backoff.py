"""How long a failing receiver is left alone before the next attempt.

Exponential: 1, 2, 4 ... seconds after the 1st, 2nd, 3rd ... failure in a
row, at most the cap. The backoff is per receiver, not per event: while it
is down, one attempt per interval probes it instead of one per queued event.
A Retry-After the receiver sends (seconds, or an HTTP date) is honoured in
place of the computed delay, up to MAX_RETRY_AFTER_SECONDS so a typo on the
receiver's side cannot park the queue for a year.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

FIRST_DELAY_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_delay(failures: int, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1 or more)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
    exponent = min(max(failures - 1, 0), 60)  # 2**60 s is past any cap; keeps floats finite
    return min(FIRST_DELAY_SECONDS * 2.0**exponent, cap)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A Retry-After header as seconds from `now` (Unix time); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a date without a zone is read as such
        return None
    return max(when.timestamp() - now, 0.0)
