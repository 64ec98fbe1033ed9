"""Cutting lines at column gutters, from the ink of rendered line crops (no OCR)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from daemon.worker.gutters import cut_line, gutter_cuts, line_ink, split_at_gutters
from daemon.worker.reading_order import estimate_skew
from harness.pages import font

FONT_PX = 28
LINE_HEIGHT = 40  # the detector's box around 28 px type
PITCH = 44


def crop_of(parts: list[tuple[int, str]], width: int, *, ink: int = 0, paper: int = 255):
    """A line crop (RGB array) with each text drawn at its x offset."""
    image = Image.new("RGB", (width, LINE_HEIGHT), (paper,) * 3)
    draw = ImageDraw.Draw(image)
    for x, text in parts:
        draw.text((x, 6), text, font=font(FONT_PX), fill=(ink,) * 3)
    return np.asarray(image)


def text_width(text: str) -> float:
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font(FONT_PX))


def quad(x0: float, y0: float, width: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x0 + width, y0), (x0 + width, y0 + LINE_HEIGHT), (x0, y0 + LINE_HEIGHT))


LEFT = "copper wire shipment reached"
RIGHT = "invoices paid within days"


def test_word_spaces_are_not_gaps() -> None:
    """A line of ordinary prose has ink runs but no gap wide enough to be a gutter."""
    ink = line_ink(crop_of([(10, "the copper wire reached the eastern dock")], 700))
    assert ink is not None
    assert ink.gaps == ()
    assert 20 <= ink.text_height <= 36


def test_wide_gap_is_found_where_it_is() -> None:
    """Whitespace of about two letters between two texts is a gap, at the right place."""
    ink = line_ink(crop_of([(10, LEFT), (520, RIGHT)], 1000))
    assert ink is not None
    ((lo, hi),) = ink.gaps
    assert 1000 * lo == pytest.approx(10 + text_width(LEFT), abs=4)
    assert 1000 * hi == pytest.approx(520, abs=4)


def test_turned_and_flat_crops_have_no_ink_reading() -> None:
    """Crops taller than wide (turned lines) and crops without contrast are left alone."""
    assert line_ink(np.full((200, 40, 3), 255, np.uint8)) is None
    assert line_ink(crop_of([(10, LEFT)], 600, ink=230, paper=250)) is None


def test_scanner_specks_do_not_close_a_gap() -> None:
    """Single dark specks in the whitespace do not count as ink."""
    crop = crop_of([(10, LEFT), (520, RIGHT)], 1000).copy()
    crop[20, 470] = 0
    crop[12:14, 490:492] = 0
    ink = line_ink(crop)
    assert ink is not None
    assert len(ink.gaps) == 1


def column_page(merged_rows: set[int], rows: int = 8, gutter: int = 30):
    """Lines of two columns; on `merged_rows` the detector returned one box for both."""
    crops, quads = [], []
    right_x = 10 + 480 + gutter
    for row in range(rows):
        y = 100 + row * PITCH
        if row in merged_rows:
            crops.append(crop_of([(10, LEFT), (right_x, RIGHT)], right_x + 420))
            quads.append(quad(100, y, right_x + 420))
        else:
            crops.append(crop_of([(10, LEFT)], 480))
            quads.append(quad(100, y, 480))
            crops.append(crop_of([(10, RIGHT)], 420))
            quads.append(quad(100 + right_x, y, 420))
    return crops, quads


def test_line_across_a_gutter_is_cut_there() -> None:
    """A box spanning the gutter of a two-column page is cut at the gutter, nowhere else."""
    crops, quads = column_page({3})
    cuts = gutter_cuts(quads, [line_ink(c) for c in crops], 0.0)
    merged = 6  # rows 0..2 give two boxes each
    assert [k for k, found in enumerate(cuts) if found] == [merged]
    ((lo, hi),) = cuts[merged]
    width = quads[merged][1][0] - quads[merged][0][0]
    assert width * lo == pytest.approx(10 + text_width(LEFT), abs=4)
    assert width * hi == pytest.approx(10 + 480 + 30, abs=4)


def test_every_line_merged_across_a_narrow_gutter_is_cut() -> None:
    """When the detector merged every row, the rows' shared gap is the gutter."""
    crops, quads = column_page(set(range(8)), gutter=26)
    cuts = gutter_cuts(quads, [line_ink(c) for c in crops], 0.0)
    assert all(len(found) == 1 for found in cuts)


def test_wide_word_space_inside_a_column_is_not_cut() -> None:
    """A wide space in one line of a column is covered by the lines around it: no cut."""
    crops, quads = [], []
    for row in range(8):
        parts = [(10, "copper wire shipment reached the dock")]
        if row == 4:
            parts = [(10, "copper wire"), (240, "reached the dock")]
        crops.append(crop_of(parts, 600))
        quads.append(quad(100, 100 + row * PITCH, 600))
    inks = [line_ink(c) for c in crops]
    assert inks[4] is not None and len(inks[4].gaps) == 1
    assert not any(gutter_cuts(quads, inks, 0.0))


def test_cut_pieces_keep_paper_and_boxes_hug_the_ink() -> None:
    """Pieces' crops keep a margin of paper; their boxes are tight, so the gutter lies between."""
    crop = crop_of([(10, LEFT), (520, RIGHT)], 1000)
    ink = line_ink(crop)
    assert ink is not None
    left_piece, right_piece = cut_line(crop, quad(0, 0, 1000), ink, ink.gaps, 8.0)
    left, right = left_piece.crop, right_piece.crop
    left_box, right_box = left_piece.box, right_piece.box
    assert left.shape[0] == right.shape[0] == LINE_HEIGHT
    assert left.shape[1] + right.shape[1] < 1000
    # Each crop's frame spans exactly the pixels the crop shows: the recogniser's positions map through it.
    assert left_piece.frame[1][0] - left_piece.frame[0][0] == pytest.approx(left.shape[1])
    assert right_piece.frame[0][0] == pytest.approx(1000 - right.shape[1])
    assert left_box[1][0] < 10 + text_width(LEFT) + 4 < 516 < right_box[0][0]
    assert right_box[0][0] - left_box[1][0] >= 20
    assert left_box[0][0] == pytest.approx(10, abs=3)


def test_split_keeps_every_line_and_its_score() -> None:
    """Splitting the page returns one piece per column line, each with its line's score."""
    crops, quads = column_page({2, 5})
    scores = [0.9 - 0.01 * k for k in range(len(crops))]
    pieces, out_scores = split_at_gutters(crops, quads, scores)
    assert len(pieces) == len(out_scores) == 16
    assert sorted(set(out_scores)) == sorted(set(scores))


def test_skewed_page_gutter_is_found() -> None:
    """On a page turned 3 degrees the gutter is found along the deskewed lines."""
    crops, quads = column_page({4})
    angle = np.radians(3)
    cos, sin = np.cos(angle), np.sin(angle)
    turned = [tuple((x * cos - y * sin, x * sin + y * cos) for x, y in q) for q in quads]
    cuts = gutter_cuts(turned, [line_ink(c) for c in crops], estimate_skew(turned))
    assert sum(1 for found in cuts if found) == 1
