"""How close recognised text is to the text that was drawn: CER and word recall.

Both texts are normalised first (Unicode NFKC, typographic quotes and dashes
to ASCII, every run of whitespace to one space), so layout choices that do
not change what a reader reads (a tab between table cells, a blank line
between blocks) cost nothing. Case and punctuation count.

- Character error rate: Levenshtein distance (insertions, deletions,
  substitutions) from the reference to the hypothesis, over the reference's
  length. Reading order counts: a two-column page read across both columns
  scores badly even when every word is right.
- Word recall: the share of the reference's words (as a multiset, lower-cased,
  punctuation stripped from their ends) that the hypothesis has, in any
  order: what full-text search would find.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import numpy as np

_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
    }
)
_SPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = ".,;:!?\"'()[]{}"


def normalise(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).translate(_TRANSLATE)).strip()


def levenshtein(reference: str, hypothesis: str) -> int:
    """Edit distance, one row of the dynamic programme at a time in numpy.

    Row i from row i-1: t[j] = min(prev[j] + 1, prev[j-1] + cost(i, j)); then
    the insertions along the row, d[j] = min(t[j], d[j-1] + 1), are
    j + running-min(t[k] - k), so a row costs a few vector operations.
    """
    if not reference:
        return len(hypothesis)
    if not hypothesis:
        return len(reference)
    target = np.frombuffer(hypothesis.encode("utf-32-le"), dtype=np.uint32)
    columns = np.arange(len(target) + 1, dtype=np.int64)
    previous = columns.copy()
    for i, char in enumerate(reference, 1):
        cost = (target != ord(char)).astype(np.int64)
        row = np.empty_like(previous)
        row[0] = i
        row[1:] = np.minimum(previous[1:] + 1, previous[:-1] + cost)
        previous = np.minimum.accumulate(row - columns) + columns
    return int(previous[-1])


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of the hypothesis against the reference (both normalised)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(ref, hyp) / len(ref)


def words(text: str) -> list[str]:
    found = (word.strip(_EDGE_PUNCTUATION).lower() for word in normalise(text).split(" "))
    return [word for word in found if word]


def word_recall(reference: str, hypothesis: str) -> float:
    """Share of the reference's words found in the hypothesis (multiset, any order)."""
    wanted = Counter(words(reference))
    total = sum(wanted.values())
    if total == 0:
        return 1.0
    have = Counter(words(hypothesis))
    found = sum(min(count, have[word]) for word, count in wanted.items())
    return found / total
