"""Word boxes for the embedded engine's lines, from RapidOCR's `return_word_box` results.

RapidOCR gives, per detected text box, its words (for Latin script and digits)
or single characters (for CJK) with a quadrilateral each, worked out from
where the recogniser's CTC decoder emitted them. The engine's lines are built
from those text boxes in reading order (one line may join several boxes), so
each word goes to the line whose box holds the word's centre, in order along
the line. This is only geometry on finished lines: it does not depend on how
reading order joined them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from daemon.protocol import Line, PageText, Point, Word

Quad = tuple[Point, Point, Point, Point]


def attach_words(
    page: PageText, word_results: Sequence[Any] | None, detections: int, size: tuple[int, int]
) -> PageText:
    """`page` with each line's words filled in, where RapidOCR gave them for every text box.

    `word_results` holds, per text box, (text, score, box) tuples; when its
    length is not `detections` RapidOCR dropped some, the pairing is unsure,
    and the page is returned as it is.
    """
    if not word_results or len(word_results) != detections or not page.lines:
        return page
    words = [word for entry in word_results for word in _words(entry, size)]
    if not words:
        return page
    taken: dict[int, list[Word]] = {}
    for word in words:
        centre = _centre(word.box)
        for index, line in enumerate(page.lines):
            if line.box is not None and _inside(centre, line.box):
                taken.setdefault(index, []).append(word)
                break
    if not taken:
        return page
    lines: list[Line] = []
    for index, line in enumerate(page.lines):
        found = taken.get(index)
        if found and line.box is not None:
            found.sort(key=lambda word, box=line.box: _along(word.box, box))  # type: ignore[misc]
            line = replace(line, words=tuple(found))
        lines.append(line)
    return replace(page, lines=tuple(lines))


def _words(entry: Any, size: tuple[int, int]) -> list[Word]:
    width, height = size
    found = []
    for item in entry or ():
        try:
            text, score, box = item
            points = [(float(x), float(y)) for x, y in box]
        except (TypeError, ValueError):
            continue
        if len(points) != 4 or not str(text).strip():
            continue
        p0, p1, p2, p3 = (
            (round(min(max(x, 0.0), width), 1), round(min(max(y, 0.0), height), 1))
            for x, y in points
        )
        confidence = round(min(max(float(score), 0.0), 1.0), 4)
        found.append(Word(text=str(text), box=(p0, p1, p2, p3), confidence=confidence))
    return found


def _centre(quad: Quad) -> Point:
    return (sum(x for x, _ in quad) / 4, sum(y for _, y in quad) / 4)


def _inside(point: Point, quad: Quad) -> bool:
    """Whether `point` lies in the (convex) quadrilateral, edges included."""
    x, y = point
    signs = []
    for (x0, y0), (x1, y1) in zip(quad, (*quad[1:], quad[0]), strict=True):
        cross = (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
        if cross != 0:
            signs.append(cross > 0)
    return all(signs) or not any(signs)


def _along(word: Quad, line: Quad) -> float:
    """How far along the line's baseline the word's centre is."""
    (x3, y3), (x2, y2) = line[3], line[2]
    angle = math.atan2(y2 - y3, x2 - x3)
    cx, cy = _centre(word)
    return (cx - x3) * math.cos(angle) + (cy - y3) * math.sin(angle)
