"""Degenerate answers: the same token or phrase repeated until the token limit.

A model whose logits went bad (fp16 overflow, a broken kernel) or that fell
into a loop writes `!!!!...` or the same line again and again until
max_new_tokens stops it. Such an answer is a failure, not text: the fallback
chain should try another model. Legitimate repetition (table rulers, dotted
leaders) is short; a loop runs to the end.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_PERIOD = 64  # longest phrase, in tokens, that counts as "the same phrase"
MIN_REPEATS = 4
MIN_SPAN = 32  # shorter repeating tails are too short to call a loop


def repeating_tail(tokens: Sequence[int], period: int) -> int:
    """How many tokens at the end of `tokens` repeat with this period."""
    run = 0
    position = len(tokens) - 1
    while position - period >= 0 and tokens[position] == tokens[position - period]:
        run += 1
        position -= 1
    return run + period if run else 0


def degenerate_period(tokens: Sequence[int]) -> int | None:
    """The period of a loop that fills the end of the answer, or None."""
    count = len(tokens)
    for period in range(1, min(MAX_PERIOD, count // MIN_REPEATS) + 1):
        span = repeating_tail(tokens, period)
        if span >= max(MIN_REPEATS * period, MIN_SPAN):
            return period
    return None
