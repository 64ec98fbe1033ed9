"""Cut detected lines that run across a column gutter, before they are recognised.

The text detector merges two lines that sit side by side when the whitespace
between them is narrower than about two letters: on a two-column page with a
narrow gutter it returns one box for a line of the left column and the line
beside it in the right column. Read as one line, both columns end up in one
text line, and the reading order cannot take them apart again.

A gutter is whitespace that runs down the page, so it is found from the
line crops themselves (the detector's crops, already cut straight along each
line, so a skewed page is no harder than a straight one):

1. Ink along each line: columns of the crop with ink, and the whitespace
   gaps between them that are wider than a word space (`line_ink`).
2. A gap is a gutter when the lines just above and below it leave the same
   stretch of the page (in the deskewed frame) empty while having ink beside
   it: the lines of the two columns end and start there, or have the same
   gap. A wide word space in justified prose is covered by the lines around
   it, so it stays (`gutter_cuts`).
3. The line is cut in the middle of each gutter gap: each piece keeps its own
   crop and its own box, and is recognised on its own (`cut_line`).

Everything here is arithmetic over pixels and boxes, tested without OCR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daemon.worker.reading_order import estimate_skew

Point = tuple[float, float]
Quad = Sequence[Point]
Interval = tuple[float, float]

# A crop this much wider than tall is a horizontal line (RapidOCR turns
# crops taller than 1.5 times their width; those are left alone).
MIN_ELONGATION = 1.5
# Paper and ink must differ by this much (0-255 grey) to tell gaps apart.
MIN_CONTRAST = 40.0
# A pixel column is ink when at least this many pixels in it are dark:
# single specks of scanner noise are not.
MIN_INK_PIXELS = 2
# Rows holding at least this share of the busiest row's ink (and more than a
# speck or two) make up the text height, descenders included.
TEXT_ROW_SHARE = 0.01
# A run of ink this narrow and this short (in text heights) is a speck, not a letter.
SPECK_WIDTH = 0.25
SPECK_HEIGHT = 0.35
# Gaps wider than this (in text heights) may be gutters; the whitespace between
# two words (a space and the letters' side bearings) is about 0.6.
CANDIDATE_GAP = 0.7
# Lines whose centres lie within this many line heights of a gap are its witnesses.
WITNESS_WINDOW = 6.0
# A witness speaks only if it has ink within this many line heights of the gap.
WITNESS_REACH = 3.0
# How many witnesses must leave the gap empty, and how many of those covering it are tolerated.
MIN_FREE_WITNESSES = 3
COVERING_SHARE = 0.25
# Paper kept beside the ink where a line is cut, in text heights.
CUT_MARGIN = 0.3
# The channel the witnesses leave free through a gap is at least this wide (in
# text heights): a little less than the narrowest gap that is looked at.
CHANNEL_WIDTH = 0.55


@dataclass(frozen=True, slots=True)
class LineInk:
    """Where a line's crop has ink, as fractions of its length (0 at its start, 1 at its end)."""

    runs: tuple[Interval, ...]  # ink, left to right; gaps narrower than a word space closed
    gaps: tuple[Interval, ...]  # the gaps between runs wide enough to be gutters
    text_height: float  # pixels of the crop


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of a detected line: its crop, the crop's own frame on the page, where its ink is.

    The recogniser measures positions (its word boxes) across the whole crop,
    paper included, so they map back to the page through `frame`; `box`, the
    frame narrowed to the ink, is the line as the reading order sees it.
    """

    crop: np.ndarray
    frame: tuple[Point, Point, Point, Point]
    ink: Interval  # fractions of the frame's length

    @property
    def box(self) -> tuple[Point, Point, Point, Point]:
        return sub_quad(self.frame, *self.ink)


def split_at_gutters(
    crops: Sequence[np.ndarray], quads: Sequence[Quad], scores: Sequence[float]
) -> tuple[list[Piece], list[float]]:
    """Detected lines cut at column gutters: the pieces, and each piece's detection score.

    The detector's boxes reach well into the paper around a line, into a
    narrow gutter from both sides; the reading order measures gutters between
    boxes, so every piece's box is drawn tight along its line. The crops keep
    their paper for the recogniser. A cut line's pieces keep its score.
    """
    inks = [line_ink(crop) for crop in crops]
    cuts = gutter_cuts(quads, inks, estimate_skew(quads))
    pieces: list[Piece] = []
    out_scores: list[float] = []
    for crop, quad, score, ink, gaps in zip(crops, quads, scores, inks, cuts, strict=True):
        margin = CUT_MARGIN * ink.text_height if ink is not None else 0.0
        for piece in cut_line(crop, quad, ink, gaps, margin):
            pieces.append(piece)
            out_scores.append(float(score))
    return pieces, out_scores


def line_ink(crop: np.ndarray) -> LineInk | None:
    """The ink along a horizontal line crop; None for a turned crop or one without contrast."""
    height, width = crop.shape[:2]
    if width < MIN_ELONGATION * height or height == 0:
        return None
    # The darkest channel: coloured ink on white paper is dark in at least one.
    grey = crop.min(axis=2) if crop.ndim == 3 else crop
    levels = np.cumsum(np.bincount(grey.ravel().astype(np.uint8), minlength=256))
    paper = float(np.searchsorted(levels, 0.9 * levels[-1]))
    darkest = float(np.searchsorted(levels, 0.02 * levels[-1]))
    if paper - darkest < MIN_CONTRAST:
        return None
    dark = grey < (paper + darkest) / 2
    row_ink = dark.sum(axis=1)
    text_rows = np.flatnonzero(row_ink > max(MIN_INK_PIXELS, TEXT_ROW_SHARE * float(row_ink.max())))
    text_height = float(text_rows[-1] - text_rows[0] + 1) if text_rows.size else float(height)
    runs = _runs(dark.sum(axis=0) >= MIN_INK_PIXELS)
    runs = [run for run in runs if not _is_speck(dark, run, text_height)]
    if not runs:
        return None
    merged: list[list[int]] = [list(runs[0])]
    gaps: list[Interval] = []
    for start, end in runs[1:]:
        gap = start - merged[-1][1]
        if gap >= CANDIDATE_GAP * text_height:
            gaps.append((merged[-1][1] / width, start / width))
            merged.append([start, end])
        else:
            merged[-1][1] = end
    return LineInk(
        runs=tuple((start / width, end / width) for start, end in merged),
        gaps=tuple(gaps),
        text_height=text_height,
    )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(edges[k]), int(edges[k + 1])) for k in range(0, len(edges), 2)]


def _is_speck(dark: np.ndarray, run: tuple[int, int], text_height: float) -> bool:
    start, end = run
    if end - start > SPECK_WIDTH * text_height:
        return False
    rows = np.flatnonzero(dark[:, start:end].any(axis=1))
    return bool(rows.size == 0 or rows[-1] - rows[0] + 1 < SPECK_HEIGHT * text_height)


@dataclass(frozen=True, slots=True)
class _Placed:
    """A line in the deskewed page frame: its centre height, and its ink and gaps along x."""

    cy: float
    height: float
    text_height: float
    runs: tuple[Interval, ...]
    gaps: tuple[Interval, ...]
    gap_fractions: tuple[Interval, ...]


def gutter_cuts(
    quads: Sequence[Quad], inks: Sequence[LineInk | None], skew: float
) -> list[tuple[Interval, ...]]:
    """For each line, the gaps (fractions of its length) where it crosses a gutter (often none)."""
    placed = [
        _place(quad, ink, skew) if ink is not None else None
        for quad, ink in zip(quads, inks, strict=True)
    ]
    heights = [line.height for line in placed if line is not None]
    if not heights:
        return [() for _ in quads]
    line_height = max(float(np.median(heights)), 1.0)
    cuts: list[tuple[Interval, ...]] = []
    for index, line in enumerate(placed):
        if line is None or not line.gaps:
            cuts.append(())
            continue
        witnesses = sorted(
            (
                other
                for k, other in enumerate(placed)
                if other is not None
                and k != index
                and abs(other.cy - line.cy) <= WITNESS_WINDOW * line_height
            ),
            key=lambda other: abs(other.cy - line.cy),  # the nearest narrow the channel first
        )
        cuts.append(
            tuple(
                fractions
                for gap, fractions in zip(line.gaps, line.gap_fractions, strict=True)
                if _is_gutter(gap, witnesses, line_height, line.text_height)
            )
        )
    return cuts


def _place(quad: Quad, ink: LineInk, skew: float) -> _Placed:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad[:4]
    cos, sin = math.cos(-skew), math.sin(-skew)

    def along(fraction: float) -> Point:
        """The deskewed point on the line's midline at this fraction of its length."""
        top = (x0 + fraction * (x1 - x0), y0 + fraction * (y1 - y0))
        bottom = (x3 + fraction * (x2 - x3), y3 + fraction * (y2 - y3))
        x, y = (top[0] + bottom[0]) / 2, (top[1] + bottom[1]) / 2
        return x * cos - y * sin, x * sin + y * cos

    def span(interval: Interval) -> Interval:
        a, b = along(interval[0])[0], along(interval[1])[0]
        return (min(a, b), max(a, b))

    centre = along(0.5)
    height = (math.hypot(x3 - x0, y3 - y0) + math.hypot(x2 - x1, y2 - y1)) / 2
    return _Placed(
        cy=centre[1],
        height=height,
        text_height=ink.text_height,
        runs=tuple(span(run) for run in ink.runs),
        gaps=tuple(span(gap) for gap in ink.gaps),
        gap_fractions=ink.gaps,
    )


def _is_gutter(
    gap: Interval, witnesses: Sequence[_Placed], line_height: float, text_height: float
) -> bool:
    """Do the lines around this gap leave a channel through it empty, with ink beside it?

    The channel narrows to what every witness leaves free: a ragged column
    edge reaches into a line's gap from one side, a gap in the next line
    sits a little to the other, and what all of them leave is the gutter.
    A witness that leaves less than a channel's width covers the gap.
    """
    lo, hi = gap
    reach = WITNESS_REACH * line_height
    narrowest = CHANNEL_WIDTH * text_height
    channel = gap
    free = covering = 0
    for witness in witnesses:
        near = [run for run in witness.runs if run[1] > lo - reach and run[0] < hi + reach]
        if not near:
            continue  # far from the gap (another column): it says nothing
        left_open = _widest_free(channel, near)
        if left_open[1] - left_open[0] >= narrowest:
            channel = left_open
            free += 1
        else:
            covering += 1
    return free >= MIN_FREE_WITNESSES and covering <= COVERING_SHARE * free


def _widest_free(channel: Interval, runs: Sequence[Interval]) -> Interval:
    """The widest part of `channel` that no run covers (empty when none is left)."""
    best: Interval = (channel[0], channel[0])
    start = channel[0]
    for run_start, run_end in sorted(runs):
        if run_end <= start:
            continue
        if run_start >= channel[1]:
            break
        if run_start - start > best[1] - best[0]:
            best = (start, run_start)
        start = max(start, run_end)
    if channel[1] - start > best[1] - best[0]:
        best = (start, channel[1])
    return best


def cut_line(
    crop: np.ndarray, quad: Quad, ink: LineInk | None, gaps: Sequence[Interval], margin: float
) -> list[Piece]:
    """A line cut at these gaps (fractions of its length) into pieces.

    Each piece's crop keeps `margin` pixels of the gap beside its ink (at most
    a third of the gap), as the detector leaves some paper around a line for
    the recogniser; the outer ends keep the detector's own. Each piece's box
    is drawn tight around its ink along the line, so the gutter lies between
    the boxes (the detector's boxes reach into a narrow gutter from both sides).
    With no gaps the one piece is the whole crop, in a box tight around its ink.
    A piece's frame is the part of the line's box that its crop shows.
    """
    width = crop.shape[1]
    runs = ink.runs if ink is not None else ((0.0, 1.0),)
    starts, ends = [0.0], []
    for lo, hi in sorted(gaps):
        keep = min(margin / width, (hi - lo) / 3)
        ends.append(lo + keep)
        starts.append(hi - keep)
    ends.append(1.0)
    pieces = []
    for start, end in zip(starts, ends, strict=True):
        left, right = round(start * width), round(end * width)
        inside = [run for run in runs if run[0] < end and run[1] > start]
        if right <= left or not inside:
            continue
        lo, hi = left / width, right / width
        ink_lo, ink_hi = max(start, inside[0][0]), min(end, inside[-1][1])
        pieces.append(
            Piece(
                crop=np.ascontiguousarray(crop[:, left:right]),
                frame=sub_quad(quad, lo, hi),
                ink=((ink_lo - lo) / (hi - lo), (ink_hi - lo) / (hi - lo)),
            )
        )
    return pieces


def sub_quad(quad: Quad, start: float, end: float) -> tuple[Point, Point, Point, Point]:
    """The part of a line's box between two fractions of its length."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad[:4]

    def top(f: float) -> Point:
        return (x0 + f * (x1 - x0), y0 + f * (y1 - y0))

    def bottom(f: float) -> Point:
        return (x3 + f * (x2 - x3), y3 + f * (y2 - y3))

    return (top(start), top(end), bottom(end), bottom(start))
