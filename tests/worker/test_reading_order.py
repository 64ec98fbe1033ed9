"""Reading order over synthetic line boxes: columns, titles, tables, skew."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.worker.reading_order import Quad, estimate_skew, reading_order, span_box

LINE_HEIGHT = 40
PITCH = 70  # baseline to baseline, as a 1.75 line spacing


def rect(x0: float, y0: float, x1: float, y1: float) -> Quad:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def line(x0: float, row: int, width: float, top: float = 100) -> Quad:
    y0 = top + row * PITCH
    return rect(x0, y0, x0 + width, y0 + LINE_HEIGHT)


def rotated(box: Quad, degrees: float, centre: tuple[float, float] = (800, 1100)) -> Quad:
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = centre
    return tuple(
        (cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos) for x, y in box
    )


def rows_of(boxes: list[Quad]) -> list[list[list[int]]]:
    """Blocks as lists of rows of flattened indices, for readable assertions."""
    layout = reading_order(boxes)
    return [[[i for span in row for i in span] for row in block] for block in layout.blocks]


def test_single_column_reads_top_to_bottom() -> None:
    """Lines of one column come back top to bottom, whatever order the detector gave."""
    boxes = [line(100, row, 1200 - 37 * row) for row in range(6)]
    shuffled = [boxes[i] for i in (3, 0, 5, 1, 4, 2)]
    order = reading_order(shuffled).order()
    assert [shuffled[i] for i in order] == boxes


def test_uniform_lines_form_one_block() -> None:
    """Evenly spaced lines are one paragraph: one block, one line per row."""
    boxes = [line(100, row, 1200) for row in range(5)]
    assert rows_of(boxes) == [[[0], [1], [2], [3], [4]]]


def test_two_columns_read_column_by_column() -> None:
    """A two-column page with aligned rows is read all left, then all right."""
    left = [line(100, row, 620) for row in range(8)]
    right = [line(880, row, 640) for row in range(8)]
    boxes = [b for pair in zip(left, right, strict=True) for b in pair]  # detector order: across
    order = reading_order(boxes).order()
    assert order == [2 * row for row in range(8)] + [2 * row + 1 for row in range(8)]


def test_columns_are_separate_blocks() -> None:
    """Each column is its own block, so the page text puts a blank line between them."""
    left = [line(100, row, 620) for row in range(4)]
    right = [line(880, row, 640) for row in range(4)]
    blocks = rows_of(left + right)
    assert blocks == [[[0], [1], [2], [3]], [[4], [5], [6], [7]]]


def test_title_above_columns_comes_first() -> None:
    """A full-width title is read before the columns under it, as its own block."""
    title = rect(300, 60, 1350, 120)
    left = [line(100, row, 600, top=220) for row in range(6)]
    right = [line(880, row, 620, top=220) for row in range(6)]
    boxes = [*right, title, *left]
    order = reading_order(boxes).order()
    assert order == [6, *range(7, 13), *range(0, 6)]
    assert rows_of(boxes)[0] == [[6]]


def test_longer_left_column_is_finished_before_the_right() -> None:
    """Left-column lines below the end of the right column still come before the right column."""
    left = [line(100, row, 620) for row in range(9)]
    right = [line(880, row, 640) for row in range(4)]
    order = reading_order(right + left).order()
    assert order == [*range(4, 13), *range(0, 4)]


def test_misaligned_columns_read_column_by_column() -> None:
    """Columns whose rows sit at different heights are still read column by column."""
    left = [line(100, row, 620) for row in range(7)]
    right = [line(880, row, 640, top=100 + PITCH // 2) for row in range(6)]
    order = reading_order(left + right).order()
    assert order == list(range(13))


def test_columns_then_full_width_footer() -> None:
    """A full-width line under two columns is read after both columns."""
    left = [line(100, row, 620) for row in range(4)]
    right = [line(880, row, 640) for row in range(4)]
    footer = line(100, 5, 1420)
    order = reading_order([footer, *right, *left]).order()
    assert order == [*range(5, 9), *range(1, 5), 0]


def test_narrow_gutter_still_parts_columns() -> None:
    """A gutter narrower than a line height (tight boxes) still parts two columns."""
    left = [line(100, row, 680) for row in range(8)]
    right = [line(805, row, 680) for row in range(8)]  # 25 px of gutter
    boxes = [b for pair in zip(left, right, strict=True) for b in pair]
    order = reading_order(boxes).order()
    assert order == [2 * row for row in range(8)] + [2 * row + 1 for row in range(8)]


def test_three_columns_read_one_after_another() -> None:
    """Three columns are read left, middle, right, each top to bottom."""
    columns = [[line(x, row, 420) for row in range(7)] for x in (100, 570, 1040)]
    boxes = [b for row in zip(*columns, strict=True) for b in row]
    order = reading_order(boxes).order()
    assert order == [3 * row + c for c in range(3) for row in range(7)]


def two_column_block(first_row: int, rows: int) -> tuple[list[Quad], list[Quad]]:
    left = [line(100, first_row + row, 620) for row in range(rows)]
    right = [line(880, first_row + row, 640) for row in range(rows)]
    return left, right


def test_figure_between_blocks_ends_the_columns_above_it() -> None:
    """Both columns above a full-width figure are read before the columns below it."""
    top_left, top_right = two_column_block(0, 4)
    low_left, low_right = two_column_block(10, 4)  # six rows of figure between
    boxes = [*top_left, *top_right, *low_left, *low_right]
    shuffled = list(reversed(boxes))
    order = reading_order(shuffled).order()
    assert [boxes.index(shuffled[i]) for i in order] == list(range(16))


def test_table_between_blocks_is_read_between_them_row_by_row() -> None:
    """A table whose cell gap lines up with the gutter stays out of the columns around it."""
    top_left, top_right = two_column_block(0, 4)
    table = [line(x, row, 150, top=130) for row in range(5, 8) for x in (100, 880, 1100, 1320)]
    low_left, low_right = two_column_block(9, 4)
    boxes = [*top_left, *top_right, *table, *low_left, *low_right]
    layout = reading_order(boxes)
    assert layout.order() == list(range(len(boxes)))
    table_rows = [row for block in layout.blocks for row in block if len(row) == 4]
    assert [[i for span in row for i in span] for row in table_rows] == [
        list(range(8 + 4 * k, 12 + 4 * k)) for k in range(3)
    ]


def test_table_after_columns_of_tall_boxes_is_still_set_apart() -> None:
    """On a blurred scan the boxes overlap row to row; the gap before a table still counts."""

    def tall(x0: float, row: int, width: float, top: float = 100) -> Quad:
        return rect(x0, top + row * PITCH, x0 + width, top + row * PITCH + 80)  # pitch 70

    top_left = [tall(60, row, 680) for row in range(5)]
    top_right = [tall(820, row, 680) for row in range(5)]
    # The table's first row: 45 px of paper below the columns' last boxes.
    table_top = 100 + 4 * PITCH + 80 + 45
    table = [tall(x, row, 150, top=table_top) for row in range(3) for x in (60, 820, 1060, 1300)]
    boxes = [*top_left, *top_right, *table]
    assert reading_order(boxes).order() == list(range(len(boxes)))


def test_table_whose_header_cells_sit_close_is_still_a_table() -> None:
    """A table whose first row reads as two groups (cells close together) is judged by its rows."""
    top_left, top_right = two_column_block(0, 4)
    # 45 px more paper than between rows above the table: a blank line, not a figure.
    header = [line(100, 4, 150, top=145), *(line(x, 4, 190, top=145) for x in (880, 1080, 1280))]
    body = [line(x, row, 150, top=145) for row in range(5, 8) for x in (100, 880, 1100, 1320)]
    boxes = [*top_left, *top_right, *header, *body]
    assert reading_order(boxes).order() == list(range(len(boxes)))


def test_running_header_and_footer_stay_out_of_the_columns() -> None:
    """A header and a footer set apart by a blank line are read first and last, not in a column."""
    header = [line(100, 0, 300, top=20), line(1200, 0, 320, top=20)]
    left, right = two_column_block(1, 8)
    footer = [line(100, 11, 200), line(1300, 11, 120)]
    boxes = [*right, *footer, *left, *header]
    order = [boxes.index(b) for b in [*header, *left, *right, *footer]]
    assert reading_order(boxes).order() == order


def test_paragraph_breaks_level_in_both_columns_keep_the_columns() -> None:
    """A paragraph gap that happens to line up in both columns does not cut the block."""
    left = [line(100, row, 620, top=100 + (30 if row >= 4 else 0)) for row in range(8)]
    right = [line(880, row, 640, top=100 + (30 if row >= 4 else 0)) for row in range(8)]
    order = reading_order(right + left).order()
    assert order == [*range(8, 16), *range(0, 8)]


def test_table_grid_reads_row_by_row() -> None:
    """A grid of short cells with wide gaps is a table: read row by row, left to right."""
    columns_x = (100, 600, 1100)
    boxes = [line(x, row, 160) for row in range(5) for x in columns_x]
    blocks = rows_of(boxes)
    assert [row for block in blocks for row in block] == [
        [3 * row, 3 * row + 1, 3 * row + 2] for row in range(5)
    ]


def test_table_cells_stay_separate_lines() -> None:
    """Cells far apart on a row are separate spans (lines), not merged into one."""
    boxes = [line(100, 0, 160), line(600, 0, 160), line(1100, 0, 160)]
    layout = reading_order(boxes)
    assert layout.blocks == (((((0,), (1,), (2,))),),)


def test_words_split_by_the_detector_merge_into_one_line() -> None:
    """Boxes on one row a word gap apart are one span, in left-to-right order."""
    boxes = [line(560, 0, 300), line(100, 0, 420), line(900, 0, 200)]
    layout = reading_order(boxes)
    assert layout.blocks == ((((1, 0, 2),),),)


def test_paragraph_gap_starts_a_new_block() -> None:
    """A vertical gap well above the usual line gap separates paragraphs."""
    first = [line(100, row, 1200) for row in range(3)]
    second = [line(100, row, 1200, top=100 + 3 * PITCH + 90) for row in range(3)]
    assert rows_of(first + second) == [[[0], [1], [2]], [[3], [4], [5]]]


def test_skew_is_measured_from_long_boxes() -> None:
    """The estimated skew matches the angle the lines were turned by."""
    boxes = [rotated(line(100, row, 1300), 2.5) for row in range(6)]
    assert math.degrees(estimate_skew(boxes)) == pytest.approx(2.5, abs=0.05)


def test_skewed_lines_keep_their_rows() -> None:
    """On a page turned 3 degrees, each line's pieces stay together and rows stay in order."""
    boxes: list[Quad] = []
    for row in range(8):
        # The same line, split at a word gap that lies elsewhere on every row
        # (gaps that line up down the page are a gutter).
        split = 500 + 70 * row
        boxes.append(rotated(line(100, row, split - 100), 3))
        boxes.append(rotated(line(split + 40, row, 1300 - split), 3))
    layout = reading_order(list(reversed(boxes)))
    spans = [span for block in layout.blocks for row in block for span in row]
    last = len(boxes) - 1
    assert spans == [(last - 2 * row, last - 2 * row - 1) for row in range(8)]


def test_skewed_two_columns_read_column_by_column() -> None:
    """Skew does not make a two-column page read across."""
    left = [rotated(line(100, row, 620), -2) for row in range(8)]
    right = [rotated(line(880, row, 640), -2) for row in range(8)]
    order = reading_order(right + left).order()
    assert order == [*range(8, 16), *range(0, 8)]


def test_span_box_encloses_its_pieces() -> None:
    """The quadrilateral of a merged line covers every piece and follows the skew."""
    boxes = [rotated(line(100, 0, 400), 3), rotated(line(530, 0, 400), 3)]
    layout = reading_order(boxes)
    (((span,),),) = layout.blocks
    quad = span_box(boxes, span, layout.skew)
    xs = [x for x, _ in quad]
    ys = [y for _, y in quad]
    for box in boxes:
        for x, y in box:
            assert min(xs) - 1 <= x <= max(xs) + 1
            assert min(ys) - 1 <= y <= max(ys) + 1
    (x0, y0), (x1, y1) = quad[0], quad[1]
    assert math.degrees(math.atan2(y1 - y0, x1 - x0)) == pytest.approx(3, abs=0.1)


def test_no_boxes_no_blocks() -> None:
    """An empty page has no blocks."""
    assert reading_order([]).blocks == ()


boxes_strategy = st.lists(
    st.tuples(
        st.floats(0, 1500),
        st.floats(0, 2200),
        st.floats(4, 900),
        st.floats(4, 120),
    ).map(lambda t: rect(t[0], t[1], t[0] + t[2], t[1] + t[3])),
    max_size=40,
)


@given(boxes_strategy)
def test_every_box_is_read_exactly_once(boxes: list[Quad]) -> None:
    """Whatever the layout, the order is a permutation of the boxes."""
    assert sorted(reading_order(boxes).order()) == list(range(len(boxes)))
