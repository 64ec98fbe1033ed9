"""Word boxes from the embedded engine: each line's words, where they were drawn, in the upright frame."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daemon.protocol import Line, PageText
from daemon.settings import RapidModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.rapid import RapidEngine
from daemon.worker.engines.rapid_words import attach_words
from harness import pages
from tests.support.pdf_tools import iou

LINES = ("Invoice number 48213 for the harbour office", "Delivered twelve boxes of copper wire")


def quad(x0: float, y0: float, x1: float, y1: float):  # type: ignore[no-untyped-def]
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def test_words_go_to_the_line_that_holds_them_in_order() -> None:
    """Words are given to the line whose box holds their centre, ordered along it."""
    page = PageText(
        "a b\nc",
        (Line("a b", quad(0, 0, 100, 20)), Line("c", quad(0, 40, 50, 60))),
    )
    results = (
        [
            ("b", 0.9, [[60, 2], [90, 2], [90, 18], [60, 18]]),
            ("a", 0.8, [[5, 2], [40, 2], [40, 18], [5, 18]]),
        ],
        [("c", 0.7, [[5, 42], [40, 42], [40, 58], [5, 58]])],
    )
    found = attach_words(page, results, 2, (200, 100))
    assert [[word.text for word in line.words] for line in found.lines] == [["a", "b"], ["c"]]
    assert found.lines[0].words[0].box == quad(5.0, 2.0, 40.0, 18.0)
    assert found.lines[0].words[0].confidence == 0.8


def test_a_result_that_does_not_pair_with_the_boxes_is_left_alone() -> None:
    """When RapidOCR's word results do not match its text boxes one to one, no words are guessed."""
    page = PageText("a", (Line("a", quad(0, 0, 100, 20)),))
    assert (
        attach_words(page, [[("a", 0.9, [[0, 0], [9, 0], [9, 9], [0, 9]])]], 2, (100, 100)) == page
    )


@pytest.fixture(scope="module")
def engine() -> Iterator[RapidEngine]:
    engine = RapidEngine("rapid", RapidModel(), Runtime())
    engine.load()
    yield engine
    engine.close()


@pytest.mark.parametrize("turned", [0, 90])
def test_words_spell_their_lines_and_sit_on_the_drawn_words(
    engine: RapidEngine, turned: int
) -> None:
    """On a drawn page (upright or scanned sideways) words spell each line and overlap the drawn words."""
    image, drawn = pages.render_known_words(LINES, width=1240, height=600, font_px=36, margin=60)
    page = engine.recognize([image.rotate(turned, expand=True)])[0]
    assert page.rotation == turned
    recognised = [word for line in page.lines for word in line.words]
    for line in page.lines:
        assert " ".join(word.text for word in line.words) == line.text
    expected = [word for line in drawn for word in line.words]
    matched = 0
    for word in expected:
        candidates = [found for found in recognised if found.text == word.text]
        if candidates:
            xs = [x for x, _ in candidates[0].box]
            ys = [y for _, y in candidates[0].box]
            matched += iou((min(xs), min(ys), max(xs), max(ys)), word.box) >= 0.5
    assert matched >= 0.9 * len(expected)
