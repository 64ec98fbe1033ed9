"""The text metrics and table helpers the benchmarks report with."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bench import report
from bench.textmetrics import cer, levenshtein, normalise, word_recall


def naive_levenshtein(first: str, second: str) -> int:
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, 1):
        current = [i]
        for j, b in enumerate(second, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


@given(st.text(alphabet="abc é", max_size=12), st.text(alphabet="abc é", max_size=12))
def test_levenshtein_matches_the_textbook_recurrence(first: str, second: str) -> None:
    """The vectorised edit distance equals the plain dynamic programme on any pair."""
    assert levenshtein(first, second) == naive_levenshtein(first, second)


def test_levenshtein_on_page_sized_text() -> None:
    """A page-sized text with a block cut out and a word put in costs exactly that many edits."""
    rng = random.Random(7)
    text = "".join(rng.choice("abcdefgh ") for _ in range(2000))
    edited = text[:500] + "xyz" + text[600:]
    assert levenshtein(text, edited) == naive_levenshtein(text, edited) == 100


def test_layout_whitespace_and_typography_cost_nothing() -> None:
    """Tabs, blank lines and curly quotes do not count as errors; case and letters do."""
    assert normalise("a\tb\n\n c \u201cd\u201d") == 'a b c "d"'
    assert cer("Invoice 48213\nfor the office", "Invoice\t48213 for the office") == 0.0
    assert cer("abcd", "abcx") == 0.25
    assert cer("Abc", "abc") > 0


def test_word_recall_ignores_order_and_counts_repeats() -> None:
    """Word recall is order-free, case-free and counts each repeated word once per occurrence."""
    assert word_recall("one two two three", "three two one") == 0.75
    assert word_recall("Hello, world.", "WORLD hello") == 1.0
    assert word_recall("", "anything") == 1.0


def test_percentile_interpolates_and_tables_are_markdown() -> None:
    """p50/p95 interpolate between samples; a table has a header rule with right-aligned numbers."""
    assert report.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert report.percentile([0.0, 10.0], 0.95) == 9.5
    lines = report.table(["name", "value"], [["a", 1]]).splitlines()
    assert lines == ["| name | value |", "|---|---:|", "| a | 1 |"]
