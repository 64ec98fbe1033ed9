"""Backoff: exponential per receiver up to the cap, and the receiver's Retry-After honoured."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from daemon.webhooks.backoff import MAX_RETRY_AFTER_SECONDS, parse_retry_after, retry_delay


def test_delays_double_from_one_second_up_to_the_cap() -> None:
    """1, 2, 4, 8 ... seconds after each failure in a row, never beyond the cap."""
    assert [retry_delay(n, cap=30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert retry_delay(10_000, cap=300.0) == 300.0  # no overflow after days of failures
    assert retry_delay(1, cap=0.25) == 0.25


def test_retry_after_replaces_the_computed_delay_within_an_hour() -> None:
    """The receiver's Retry-After wins over the backoff, shorter or longer, clamped to [0, 1 h]."""
    assert retry_delay(6, cap=30.0, retry_after=2.0) == 2.0
    assert retry_delay(1, cap=30.0, retry_after=120.0) == 120.0
    assert retry_delay(1, cap=30.0, retry_after=10**9) == MAX_RETRY_AFTER_SECONDS
    assert retry_delay(1, cap=30.0, retry_after=-5.0) == 0.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 0 ", 0.0), (None, None), ("soon", None), ("-3", None), ("", None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    """Delta-seconds are read as they are; an absent or unreadable header is None."""
    assert parse_retry_after(header, now=1_000_000.0) == seconds


def test_retry_after_as_an_http_date() -> None:
    """An HTTP date is seconds from now; a date already past means at once."""
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0
