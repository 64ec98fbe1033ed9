"""Reading order for OCR line boxes: columns read one after another, rows top to bottom.

A text detector returns line boxes sorted roughly top to bottom, which reads a
two-column page across both columns. This module orders boxes the way a
person reads them, using geometry alone (so it is unit-tested without OCR):

1. Skew: the page's text angle is the median angle of the long boxes; every
   box is turned by minus that angle, so rows of a slightly skewed scan are
   horizontal again.
2. Bands: boxes whose vertical cores overlap form a band (a row, or several
   rows of misaligned columns).
3. Sections (the XY-cut): consecutive bands that share a vertical whitespace
   gap (no box crosses it) form a section. If the boxes on both sides of the
   widest shared gap look like text columns (lines much wider than the gap),
   the section is cut there and each side is ordered recursively: all of the
   left column, then the right. Otherwise (a table, a form) it is read row by
   row, left to right. A full-width title crosses the gap, so it stays above
   the columns and is read first. A section also ends where a reader ends a
   block of columns: at whitespace as tall as a figure, and at a blank line
   before rows built differently (a table's cells) or around a lone row (a
   running header or footer); what lies below is read after both columns.
4. Rows are grouped into paragraphs at unusually large vertical gaps; within
   a row, boxes closer than about a line and a half apart are one line (the
   detector sometimes splits a line at wide word gaps).

Boxes are best drawn tight around their ink (daemon.worker.gutters does so
for the embedded engine, and cuts lines that run across a gutter): the gaps
between them are then the page's own whitespace.

The result is blocks (paragraphs, column pieces) of rows of spans, each span
being the indices of the boxes that make one line.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
Quad = Sequence[Point]
Span = tuple[int, ...]  # boxes that form one line, left to right
Row = tuple[Span, ...]  # lines that share a row (table cells, form fields), left to right
Block = tuple[Row, ...]  # a paragraph or a column piece, top to bottom

# Angles beyond this are not skew but text set at an angle (or a sideways page).
MAX_SKEW = math.radians(15)
# Ascenders and descenders make neighbouring rows touch: only the middle of a
# box (this much trimmed off top and bottom) decides which band it is in.
CORE_TRIM = 0.25
# A gap between columns is at least half a line height wide (a narrow gutter
# between boxes tight around their ink); a gap between words inside one box
# does not count, and gaps that line up row after row are rarely word gaps.
MIN_COLUMN_GAP = 0.5
# Whitespace this tall (in line heights, beyond the usual gap between rows)
# across a whole column block ends it: a figure sits there, and the columns
# above it are read before what comes below. Less, about a blank line, ends
# it only before rows of another build (table cells) or around a lone row (a
# header, a footer): paragraph breaks that happen to line up in every column
# leave as much.
SECTION_GAP = 1.8
SET_APART_GAP = 0.6
# Text columns hold lines several times wider than the gap between them and
# at least a few words long; table cells are short next to their gaps.
COLUMN_WIDTH_TO_GAP = 1.5
COLUMN_MIN_LINE = 8.0
# A box belongs to a row when at least half of its height lies inside it.
SAME_ROW_OVERLAP = 0.5
# Boxes on one row closer than this (in line heights) are one line (the
# detector splits a line at gaps of about a line height; tight boxes add the
# paper it left around them to the gap).
WORD_GAP = 1.5
# A paragraph break is a row gap well above the block's usual one.
PARAGRAPH_GAP = 1.8
PARAGRAPH_SLACK = 0.5


@dataclass(frozen=True, slots=True)
class Rect:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass(frozen=True, slots=True)
class Layout:
    """Boxes in reading order, and the skew that ordering corrected."""

    blocks: tuple[Block, ...]
    skew: float  # radians; positive when lines run down to the right (image y points down)

    def order(self) -> list[int]:
        """Every box index once, in reading order."""
        return [index for block in self.blocks for row in block for span in row for index in span]


def reading_order(boxes: Sequence[Quad]) -> Layout:
    """Order line boxes (quadrilaterals clockwise from top-left) as a reader would."""
    if not boxes:
        return Layout(blocks=(), skew=0.0)
    skew = estimate_skew(boxes)
    rects = [_bounds(_rotate(box, -skew)) for box in boxes]
    line_height = max(statistics.median(rect.height for rect in rects), 1.0)
    region = _Region(rects, line_height)
    blocks = region.layout(list(range(len(boxes))))
    return Layout(blocks=tuple(blocks), skew=skew)


def estimate_skew(boxes: Sequence[Quad]) -> float:
    """The page's text angle: the length-weighted median angle of clearly long boxes."""
    angles: list[tuple[float, float]] = []
    for box in boxes:
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = box[:4]
        dx = ((x1 - x0) + (x2 - x3)) / 2
        dy = ((y1 - y0) + (y2 - y3)) / 2
        length = math.hypot(dx, dy)
        height = (math.hypot(x3 - x0, y3 - y0) + math.hypot(x2 - x1, y2 - y1)) / 2
        angle = math.atan2(dy, dx)
        if length >= 2 * height and abs(angle) <= MAX_SKEW:
            angles.append((angle, length))
    if not angles:
        return 0.0
    angles.sort()
    half = sum(length for _, length in angles) / 2
    running = 0.0
    for angle, length in angles:
        running += length
        if running >= half:
            return angle
    return angles[-1][0]


def span_box(boxes: Sequence[Quad], span: Span, skew: float) -> tuple[Point, Point, Point, Point]:
    """One quadrilateral (clockwise from top-left) around the boxes of a span."""
    if len(span) == 1:
        p0, p1, p2, p3 = boxes[span[0]][:4]
        return (p0, p1, p2, p3)
    rects = [_bounds(_rotate(boxes[index], -skew)) for index in span]
    x0 = min(rect.x0 for rect in rects)
    y0 = min(rect.y0 for rect in rects)
    x1 = max(rect.x1 for rect in rects)
    y1 = max(rect.y1 for rect in rects)
    q0, q1, q2, q3 = _rotate(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), skew)
    return (q0, q1, q2, q3)


def _rotate(points: Sequence[Point], angle: float) -> list[Point]:
    cos, sin = math.cos(angle), math.sin(angle)
    return [(x * cos - y * sin, x * sin + y * cos) for x, y in points]


def _bounds(points: Sequence[Point]) -> Rect:
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    return Rect(min(xs), min(ys), max(xs), max(ys))


Interval = tuple[float, float]


class _Region:
    """The XY-cut over deskewed rectangles; indices refer to `rects`."""

    def __init__(self, rects: Sequence[Rect], line_height: float) -> None:
        self.rects = rects
        self.line_height = line_height

    def layout(self, ids: list[int]) -> list[Block]:
        bands = self._bands(ids)
        apart = self._set_apart(bands)
        blocks: list[Block] = []
        pending: list[list[int]] = []  # rows read top to bottom, not yet cut into paragraphs
        start = 0
        while start < len(bands):
            members = list(bands[start])
            gaps = self._free_gaps(bands[start])
            end = start + 1
            while end < len(bands):
                if apart[end]:
                    break
                shared = _intersect(gaps, self._free_gaps(bands[end]))
                if not self._interior(shared, members + bands[end]):
                    break
                gaps = shared
                members += bands[end]
                end += 1
            columns = self._column_split(members, gaps) if end - start >= 2 else None
            if columns is None:
                for band in bands[start:end]:
                    pending.extend(self._rows(band))
            else:
                blocks.extend(self._paragraphs(pending))
                pending = []
                for column in columns:
                    blocks.extend(self.layout(column))
            start = end
        blocks.extend(self._paragraphs(pending))
        return blocks

    def _bands(self, ids: list[int]) -> list[list[int]]:
        """Chains of boxes whose vertical cores overlap, top to bottom."""

        def core(index: int) -> Interval:
            rect = self.rects[index]
            trim = rect.height * CORE_TRIM
            return rect.y0 + trim, rect.y1 - trim

        bands: list[list[int]] = []
        bottom = -math.inf
        for index in sorted(ids, key=lambda i: core(i)[0]):
            top, low = core(index)
            if bands and top < bottom:
                bands[-1].append(index)
                bottom = max(bottom, low)
            else:
                bands.append([index])
                bottom = low
        return bands

    def _set_apart(self, bands: list[list[int]]) -> list[bool]:
        """For each band, whether a column block must end above it.

        A column block ends at tall whitespace (a figure between blocks), and
        at whitespace of about a blank line where what comes next is built
        differently (a table's cells after the columns' lines) or is one line
        set apart on both sides (a running header or footer). Whitespace is
        counted beyond the usual gap between bands: the detector's boxes
        reach into the paper between lines, more on a blurred scan.
        """
        tall = SECTION_GAP * self.line_height
        blank = SET_APART_GAP * self.line_height
        between = [self._vertical_gap(a, b) for a, b in itertools.pairwise(bands)]
        usual = statistics.median(between) if between else 0.0
        extra = [math.inf, *(gap - usual for gap in between), math.inf]
        # Bands between two such gaps form a group; its build is how many
        # groups of boxes most of its bands have side by side.
        starts = [k for k in range(len(bands)) if extra[k] >= blank]
        build = [0] * len(bands)
        for start, end in itertools.pairwise([*starts, len(bands)]):
            counts = Counter(self._side_by_side(band) for band in bands[start:end])
            most = max(counts.values())
            for k in range(start, end):
                build[k] = max(count for count, seen in counts.items() if seen == most)
        alone = [extra[k] >= blank and extra[k + 1] >= blank for k in range(len(bands))]
        apart = [True]
        for k in range(1, len(bands)):
            gap = extra[k]
            apart.append(
                gap >= tall
                or (gap >= blank and (alone[k - 1] or alone[k] or build[k - 1] != build[k]))
            )
        return apart

    def _side_by_side(self, band: Sequence[int]) -> int:
        """How many groups of boxes the band has side by side (columns, table cells)."""
        return len(self._interior(self._free_gaps(band), band)) + 1

    def _vertical_gap(self, upper: Sequence[int], lower: Sequence[int]) -> float:
        """The whitespace between two bands, top to bottom."""
        return min(self.rects[i].y0 for i in lower) - max(self.rects[i].y1 for i in upper)

    def _free_gaps(self, ids: Sequence[int]) -> list[Interval]:
        """The x-intervals no box in `ids` covers, margins (to +-inf) included."""
        spans = sorted((self.rects[i].x0, self.rects[i].x1) for i in ids)
        gaps: list[Interval] = []
        edge = -math.inf
        for x0, x1 in spans:
            if x0 > edge:
                gaps.append((edge, x0))
            edge = max(edge, x1)
        gaps.append((edge, math.inf))
        return gaps

    def _interior(self, gaps: Sequence[Interval], ids: Sequence[int]) -> list[Interval]:
        """Gaps wide enough for a column break with boxes on both sides."""
        min_width = MIN_COLUMN_GAP * self.line_height
        left_edge = min(self.rects[i].x1 for i in ids)
        right_edge = max(self.rects[i].x0 for i in ids)
        return [
            (lo, hi)
            for lo, hi in gaps
            if hi - lo >= min_width and left_edge <= lo and hi <= right_edge
        ]

    def _column_split(
        self, ids: list[int], gaps: Sequence[Interval]
    ) -> tuple[list[int], list[int]] | None:
        """Cut at the widest shared gap whose two sides both read as text columns."""
        for lo, hi in sorted(self._interior(gaps, ids), key=lambda g: g[0] - g[1]):
            left = [i for i in ids if self.rects[i].x1 <= lo]
            right = [i for i in ids if self.rects[i].x0 >= hi]
            needed = max(COLUMN_WIDTH_TO_GAP * (hi - lo), COLUMN_MIN_LINE * self.line_height)
            if all(
                statistics.median(self.rects[i].width for i in side) >= needed
                for side in (left, right)
            ):
                return left, right
        return None

    def _rows(self, band: list[int]) -> list[list[int]]:
        """Rows of a band, top to bottom, each sorted left to right."""
        rows: list[list[int]] = []
        extents: list[Interval] = []
        for index in sorted(band, key=lambda i: self.rects[i].cy):
            rect = self.rects[index]
            if extents:
                top, bottom = extents[-1]
                overlap = min(bottom, rect.y1) - max(top, rect.y0)
                if overlap >= SAME_ROW_OVERLAP * rect.height:
                    rows[-1].append(index)
                    extents[-1] = (min(top, rect.y0), max(bottom, rect.y1))
                    continue
            rows.append([index])
            extents.append((rect.y0, rect.y1))
        return [sorted(row, key=lambda i: self.rects[i].x0) for row in rows]

    def _spans(self, row: list[int]) -> Row:
        """Merge boxes of a row that sit a word gap apart into lines."""
        spans: list[list[int]] = []
        right_edge = -math.inf
        for index in row:
            rect = self.rects[index]
            if spans and rect.x0 - right_edge <= WORD_GAP * self.line_height:
                spans[-1].append(index)
            else:
                spans.append([index])
            right_edge = max(right_edge, rect.x1) if len(spans[-1]) > 1 else rect.x1
        return tuple(tuple(span) for span in spans)

    def _paragraphs(self, rows: list[list[int]]) -> list[Block]:
        """Cut consecutive rows into blocks where the gap between rows is unusually large."""
        if not rows:
            return []
        extents = [
            (min(self.rects[i].y0 for i in row), max(self.rects[i].y1 for i in row)) for row in rows
        ]
        gaps = [extents[k + 1][0] - extents[k][1] for k in range(len(rows) - 1)]
        usual = max(statistics.median(gaps), 0.0) if gaps else 0.0
        threshold = max(PARAGRAPH_GAP * usual, usual + PARAGRAPH_SLACK * self.line_height)
        blocks: list[Block] = []
        current: list[Row] = [self._spans(rows[0])]
        for gap, row in zip(gaps, rows[1:], strict=True):
            if gap > threshold:
                blocks.append(tuple(current))
                current = []
            current.append(self._spans(row))
        blocks.append(tuple(current))
        return blocks


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersection of two sorted lists of disjoint intervals."""
    result: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo < hi:
            result.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result
