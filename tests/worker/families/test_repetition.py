"""Degenerate-answer detection: a loop that fills the end of the answer."""

from __future__ import annotations

from daemon.worker.families.repetition import MIN_SPAN, degenerate_period, repeating_tail


def test_one_token_repeated_is_degenerate() -> None:
    """`!!!!...` (one token over and over) has period 1."""
    assert degenerate_period([0] * 40) == 1


def test_a_phrase_looping_after_real_text_is_degenerate() -> None:
    """Text followed by the same 5-token phrase many times is caught, with its period."""
    answer = list(range(100, 160)) + [7, 8, 9, 10, 11] * 12
    assert degenerate_period(answer) == 5


def test_ordinary_text_is_not_degenerate() -> None:
    """An answer without a repeating tail passes."""
    assert degenerate_period(list(range(500))) is None


def test_short_repeats_are_not_degenerate() -> None:
    """A repeat shorter than MIN_SPAN tokens (a table ruler, dotted leaders) passes."""
    answer = list(range(200)) + [5, 6] * ((MIN_SPAN - 2) // 2)
    assert degenerate_period(answer) is None
    assert degenerate_period([3] * (MIN_SPAN - 1)) is None


def test_a_phrase_needs_four_repeats() -> None:
    """A 20-token phrase seen three times at the end is not yet a loop."""
    phrase = list(range(300, 320))
    assert degenerate_period(list(range(50)) + phrase * 3) is None
    assert degenerate_period(list(range(50)) + phrase * 4) == 20


def test_repeating_tail_counts_the_periodic_suffix() -> None:
    """repeating_tail measures how far back the period holds."""
    assert repeating_tail([1, 2, 3, 4, 3, 4, 3, 4], 2) == 6
    assert repeating_tail([1, 2, 3], 1) == 0
