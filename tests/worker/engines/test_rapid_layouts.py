"""The embedded engine on multi-column pages rendered from known text: each column in order.

Pages come from bench/layouts.py (the tesseract benchmark's layouts), cut
short so that each reads in a few seconds: two and three columns, a title
over the columns, a figure or a table between column blocks, a running
header and footer, a gutter narrow enough for the detector to join the lines
beside it, and the same page skewed or turned sideways.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from bench import layouts, pageset
from bench.textmetrics import cer
from daemon.protocol import PageText
from daemon.settings import RapidModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.rapid import RapidEngine

PAGE = (1654, 1150)
HEADER = ("Field Service Manual", "Chapter 4: Timing")
FOOTER = ("Revision C", "Page 17")
DESIGNS = {
    "two columns": layouts.Design((layouts.Columns(2, 14),)),
    "three columns": layouts.Design((layouts.Columns(3, 14, font_px=24, gutter_px=50),)),
    "title": layouts.Design((layouts.Title("Timing and Ignition Notes"), layouts.Columns(2, 11))),
    "figure": layouts.Design((layouts.Columns(2, 5), layouts.Figure(220), layouts.Columns(2, 5))),
    "table": layouts.Design((layouts.Columns(2, 5), layouts.Table(3), layouts.Columns(2, 5))),
    "header and footer": layouts.Design((layouts.Columns(2, 11),), header=HEADER, footer=FOOTER),
    "narrow gutter": layouts.Design((layouts.Columns(2, 14, gutter_px=22),)),
}
SCANS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "as drawn": lambda page: page,
    "skewed 2 degrees": lambda page: pageset.skewed(page, 2.0),
    "skewed 4 degrees": lambda page: pageset.skewed(page, -4.0),
    "turned 90 degrees": lambda page: pageset.turned(page, 90),
    "scanned, skewed 3 degrees": lambda page: layouts.scanned(pageset.skewed(page, 3.0)),
}


@pytest.fixture(scope="module")
def engine() -> Iterator[RapidEngine]:
    engine = RapidEngine("rapid", RapidModel(), Runtime())
    engine.load()
    yield engine
    engine.close()


Reading = tuple[layouts.Page, PageText]


def recognise(engine: RapidEngine, design: str, scan: str = "as drawn") -> Reading:
    page = layouts.render(DESIGNS[design], seed=len(design), size=PAGE)
    return page, engine.recognize([SCANS[scan](page.image)])[0]


@pytest.fixture(scope="module")
def upright(engine: RapidEngine) -> Callable[[str], Reading]:
    """Each upright page is read once for all the tests that look at it."""
    done: dict[str, Reading] = {}

    def reading(design: str) -> Reading:
        if design not in done:
            done[design] = recognise(engine, design)
        return done[design]

    return reading


def drawn_lines(page: layouts.Page) -> list[str]:
    return [line for block in page.blocks for line in block.splitlines()]


def lines_across_units(page: layouts.Page, read: PageText) -> list[str]:
    """Recognised lines that match no drawn line: parts of two columns joined, say."""
    drawn = [line.lower() for line in drawn_lines(page)]
    strays = []
    for line in read.lines:
        text = line.text.lower()
        best = max(difflib.SequenceMatcher(None, text, each).ratio() for each in drawn)
        # A drawn line cut at a word gap is a part of it, not a stray.
        inside = any(text in each for each in drawn)
        if best < 0.8 and not inside:
            strays.append(line.text)
    return strays


def blocks_across_columns(page: layouts.Page, read: PageText) -> list[str]:
    """Paragraphs of the page text that hold words of more than one column."""
    mixed = []
    for block in read.text.split("\n\n"):
        rows = block.splitlines()
        owners = set()
        for row in rows:
            for number, column in enumerate(page.columns):
                if any(difflib.SequenceMatcher(None, row, line).ratio() >= 0.8 for line in column):
                    owners.add(number)
        if len(owners) > 1:
            mixed.append(block[:80])
    return mixed


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_each_column_reads_in_order(upright: Callable[[str], Reading], design: str) -> None:
    """Every column's words come out in the drawn order, columns one after another."""
    page, read = upright(design)
    assert layouts.column_order_faults(page.columns, read.text) == []
    assert cer(page.text, read.text) <= 0.01


@pytest.mark.parametrize("scan", ["skewed 2 degrees", "skewed 4 degrees", "turned 90 degrees"])
def test_skewed_or_turned_page_reads_each_column_in_order(engine: RapidEngine, scan: str) -> None:
    """A two-column page scanned crooked or sideways still reads column by column."""
    page, read = recognise(engine, "two columns", scan)
    assert layouts.column_order_faults(page.columns, read.text) == []
    assert cer(page.text, read.text) <= 0.01
    assert lines_across_units(page, read) == []


def test_scanned_skewed_table_page_reads_the_table_between_the_blocks(engine: RapidEngine) -> None:
    """On a blurred, noisy scan fed crooked, the table still stays out of the columns."""
    page, read = recognise(engine, "table", "scanned, skewed 3 degrees")
    assert layouts.column_order_faults(page.columns, read.text) == []
    assert cer(page.text, read.text) <= 0.02


@pytest.mark.parametrize("design", ["narrow gutter", "header and footer", "three columns"])
def test_no_line_or_paragraph_joins_two_columns(
    upright: Callable[[str], Reading], design: str
) -> None:
    """No recognised line, and no paragraph of the text, holds parts of two columns."""
    page, read = upright(design)
    assert lines_across_units(page, read) == []
    assert blocks_across_columns(page, read) == []
    assert "\t" not in read.text


def test_narrow_gutter_lines_are_cut_into_their_columns(
    engine: RapidEngine, upright: Callable[[str], Reading]
) -> None:
    """Where the detector joins the lines beside a narrow gutter, each is read on its own."""
    page, read = upright("narrow gutter")
    halfway = PAGE[0] / 2
    # The page is one that needs the cut: the detector's own boxes span the gutter.
    detection = engine._detect(page.image)
    assert detection is not None
    spanning = [
        box for box in detection.det.boxes if box[0][0] < halfway - 50 < halfway + 50 < box[1][0]
    ]
    assert len(spanning) >= 3
    for line in read.lines:
        assert line.box is not None
        xs = [x for x, _ in line.box]
        assert max(xs) < halfway or min(xs) > halfway - 15, line.text
