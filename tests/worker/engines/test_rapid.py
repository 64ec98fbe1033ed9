"""The embedded RapidOCR engine on rendered pages: words, reading order, rotation, edge cases."""

from __future__ import annotations

import difflib
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon.protocol import PageText
from daemon.settings import RapidModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.rapid import RapidEngine, assemble_page
from daemon.worker.engines.rapid_setup import intra_op_threads
from harness.pages import (
    SAMPLE_LINES,
    render_page,
    render_titled_columns,
    save_palette_png,
)

REPO = Path(__file__).resolve().parents[3]
WORD_RECALL = 0.9
# Pages that need not be A4 are cut short: the detector's time grows with the area.
SHORT_PAGE = 700

PAGE_LINES = (
    *SAMPLE_LINES,
    "Seven crates of lamp oil arrived on Tuesday",
    "The clerk signed for them at the north gate",
)
TITLE = "Harbour Office Quarterly Report"
LEFT = (
    "The left column opens with news",
    "about the copper wire shipment",
    "that reached the eastern dock",
    "late on Monday evening in rain",
)
RIGHT = (
    "Meanwhile the right column tells",
    "of invoices paid within thirty",
    "days by every merchant we know",
    "except the one from the south",
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def word_recall(drawn: Sequence[str], recognised: str) -> float:
    """Share of the drawn words (with multiplicity) found in the recognised text."""
    expected = Counter(w for line in drawn for w in words(line))
    found = Counter(words(recognised))
    return sum((expected & found).values()) / sum(expected.values())


def line_index(page: PageText, drawn: str) -> int:
    """Index of the recognised line that best matches a drawn line."""
    ratios = [
        difflib.SequenceMatcher(None, drawn.lower(), line.text.lower()).ratio()
        for line in page.lines
    ]
    best = max(range(len(ratios)), key=ratios.__getitem__)
    assert ratios[best] >= 0.8, f"{drawn!r} not among {[line.text for line in page.lines]}"
    return best


@pytest.fixture(scope="module")
def engine() -> Iterator[RapidEngine]:
    engine = RapidEngine("rapid", RapidModel(), Runtime())
    engine.load()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def clean_page(engine: RapidEngine) -> PageText:
    return engine.recognize([render_page(PAGE_LINES)])[0]


def test_load_reports_cpu_engine_and_bundled_models() -> None:
    """load() describes a CPU float32 engine, the wheel's model files and the thread count."""
    engine = RapidEngine("rapid-default", RapidModel(threads=1), Runtime())
    info = engine.load()
    try:
        assert (info.engine, info.model, info.device, info.dtype, info.attention) == (
            "rapid",
            "rapid-default",
            "cpu",
            "float32",
            "none",
        )
        assert set(info.details["models"]) == {"det", "cls", "rec"}
        assert all(name.endswith(".onnx") for name in info.details["models"].values())
        assert info.details["rapidocr"].startswith("3.")
        assert info.details["intra_op_threads"] == 1
        # The setting reaches ONNX Runtime's session, not just our report.
        session = engine._ocr.text_det.session.session
        assert session.get_session_options().intra_op_num_threads == 1
    finally:
        engine.close()


def test_threads_default_to_the_cpus_this_process_may_use() -> None:
    """0 threads means one per CPU in the process's affinity mask; explicit values are kept."""
    assert intra_op_threads(0) == len(os.sched_getaffinity(0))
    assert intra_op_threads(1) == 1
    assert intra_op_threads(10_000) == os.cpu_count()


def test_load_never_touches_the_network(tmp_path: Path) -> None:
    """Building and warming up the engine opens no socket (a download would)."""
    script = textwrap.dedent(
        """
        import sys

        def no_network(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
                raise RuntimeError(f"network access: {event} {args!r}")

        sys.addaudithook(no_network)
        from daemon.settings import RapidModel
        from daemon.worker.engines.base import Runtime
        from daemon.worker.engines.rapid import RapidEngine

        engine = RapidEngine("rapid", RapidModel(), Runtime())
        engine.load()
        print("loaded")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"


def test_load_quiets_rapidocr_logging(engine: RapidEngine) -> None:
    """RapidOCR's logger drops INFO and hands warnings to the root logger, not its colour handler."""
    rapid_logger = logging.getLogger("RapidOCR")
    assert rapid_logger.getEffectiveLevel() == logging.WARNING
    assert rapid_logger.handlers == []
    assert rapid_logger.propagate


def test_clean_page_words(clean_page: PageText) -> None:
    """An upright page is read with high word recall and no rotation."""
    assert word_recall(PAGE_LINES, clean_page.text) >= WORD_RECALL
    assert clean_page.rotation == 0


def test_clean_page_lines_in_order(clean_page: PageText) -> None:
    """One line per drawn line, top to bottom, joined by newlines in the text."""
    indices = [line_index(clean_page, drawn) for drawn in PAGE_LINES]
    assert indices == sorted(indices)
    assert len(clean_page.lines) == len(PAGE_LINES)
    assert clean_page.text.count("\n") == len(PAGE_LINES) - 1


def test_boxes_inside_page_and_confidences_in_range(clean_page: PageText) -> None:
    """Every line has a quadrilateral inside the page and a confidence in [0, 1]."""
    width, height = clean_page.details["upright_size"]
    assert (width, height) == (1654, 2339)
    for line in clean_page.lines:
        assert line.box is not None
        assert len(line.box) == 4
        for x, y in line.box:
            assert 0 <= x <= width
            assert 0 <= y <= height
        assert line.confidence is not None
        assert 0.0 <= line.confidence <= 1.0


def test_boxes_sit_where_the_lines_were_drawn(clean_page: PageText) -> None:
    """The first line's box is at the top-left margin where render_page drew it (y=120)."""
    first = clean_page.lines[line_index(clean_page, PAGE_LINES[0])]
    assert first.box is not None
    ys = [y for _, y in first.box]
    xs = [x for x, _ in first.box]
    assert 90 <= min(ys) <= 135 < max(ys) <= 190
    assert 90 <= min(xs) <= 135


def test_two_columns_read_title_then_left_then_right(engine: RapidEngine) -> None:
    """A titled two-column page reads the title, all of the left column, then the right."""
    page = engine.recognize([render_titled_columns(TITLE, LEFT, RIGHT)])[0]
    assert word_recall((TITLE, *LEFT, *RIGHT), page.text) >= WORD_RECALL
    title = line_index(page, TITLE)
    left = [line_index(page, drawn) for drawn in LEFT]
    right = [line_index(page, drawn) for drawn in RIGHT]
    assert title < min(left)
    assert left == sorted(left)
    assert right == sorted(right)
    assert max(left) < min(right)
    # Title, left column and right column are separate blocks in the text.
    blocks = page.text.split("\n\n")
    assert len(blocks) == 3
    assert word_recall(LEFT, blocks[1]) >= WORD_RECALL
    assert word_recall(RIGHT, blocks[2]) >= WORD_RECALL


@pytest.mark.parametrize("turned", [90, 180, 270])
def test_rotated_page_is_turned_upright(engine: RapidEngine, turned: int) -> None:
    """A page scanned turned counter-clockwise is detected, turned back clockwise and read."""
    scanned = render_page(PAGE_LINES, height=SHORT_PAGE).rotate(turned, expand=True)
    page = engine.recognize([scanned])[0]
    assert page.rotation == turned
    assert word_recall(PAGE_LINES, page.text) >= WORD_RECALL
    indices = [line_index(page, drawn) for drawn in PAGE_LINES]
    assert indices == sorted(indices)
    # Boxes are in the upright page's frame.
    assert page.details["upright_size"] == [1654, SHORT_PAGE]
    for line in page.lines:
        assert line.box is not None
        assert all(0 <= x <= 1654 and 0 <= y <= SHORT_PAGE for x, y in line.box)


def test_orientation_detection_can_be_turned_off() -> None:
    """With detect_orientation=False an upside-down page is read as it is: rotation 0."""
    engine = RapidEngine("rapid-fixed", RapidModel(detect_orientation=False), Runtime())
    engine.load()
    try:
        upside_down = render_page(PAGE_LINES[:3], height=SHORT_PAGE).rotate(180)
        page = engine.recognize([upside_down])[0]
        assert page.rotation == 0
        assert "orientation" not in page.details
        upright = engine.recognize([render_page(PAGE_LINES[:3], height=SHORT_PAGE)])[0]
        assert word_recall(PAGE_LINES[:3], upright.text) >= WORD_RECALL
    finally:
        engine.close()


def test_blank_page_is_empty_not_an_error(engine: RapidEngine) -> None:
    """A page with no text gives empty text and no lines."""
    page = engine.recognize([Image.new("RGB", (1654, 2339), "white")])[0]
    assert page.text == ""
    assert page.lines == ()
    assert page.rotation == 0


def test_palette_image_is_read(engine: RapidEngine, tmp_path: Path) -> None:
    """A palette-mode PNG is converted to RGB and read like any other page."""
    path = save_palette_png(render_page(SAMPLE_LINES), tmp_path / "palette.png")
    with Image.open(path) as image:
        assert image.mode == "P"
        page = engine.recognize([image])[0]
    assert word_recall(SAMPLE_LINES, page.text) >= WORD_RECALL


def test_transparent_image_is_read_on_white(engine: RapidEngine) -> None:
    """Black text on a transparent background is read (transparency becomes white, not black)."""
    opaque = render_page(SAMPLE_LINES, width=1400, height=500).convert("L")
    ink = Image.new("RGBA", opaque.size, (0, 0, 0, 0))
    ink.putalpha(opaque.point(lambda v: 255 - v))
    page = engine.recognize([ink])[0]
    assert word_recall(SAMPLE_LINES, page.text) >= WORD_RECALL


def test_several_pages_in_one_call(engine: RapidEngine) -> None:
    """recognize() returns one PageText per image, in order."""
    pages = engine.recognize(
        [Image.new("RGB", (600, 300), "white"), render_page(SAMPLE_LINES[:1], height=400)]
    )
    assert len(pages) == 2
    assert pages[0].text == ""
    assert word_recall(SAMPLE_LINES[:1], pages[1].text) >= WORD_RECALL


def test_recognize_before_load_is_an_engine_error() -> None:
    """Using an engine that was never loaded fails with a named error, not an AttributeError."""
    from daemon.worker.engines.base import EngineError

    with pytest.raises(EngineError):
        RapidEngine("rapid", RapidModel(), Runtime()).recognize([render_page()])


def test_close_flip_vote_is_settled_by_recognition(engine: RapidEngine) -> None:
    """The tie-break reads line crops both ways up and prefers the way that reads better."""
    detection = engine._detect(render_page(PAGE_LINES[:3], height=400))
    assert detection is not None
    voters = list(range(len(detection.crops)))
    assert not engine._reads_better_turned(detection.crops, voters)
    turned = [crop[::-1, ::-1] for crop in detection.crops]
    assert engine._reads_better_turned(turned, voters)


# One full-width line each; the 0/180 classifier votes these upright pages
# "upside down" at 0.95 and 0.97 (it squeezes the crop into 192 x 48 px).
LONG_LINES = (
    "26668 80966 for that buy each receipt, prices also me news receipt get",
    "Line public any so did posts. Please free to copyright 2536 much like rate email",
)


@pytest.mark.parametrize("line", LONG_LINES)
def test_confident_upside_down_vote_is_checked_by_reading(engine: RapidEngine, line: str) -> None:
    """An upright one-line page that the classifier votes upside down is read upright, not turned."""
    page = engine.recognize([render_page([line], font_px=33, margin=130)])[0]
    assert page.details["orientation"]["flip_share"] > 0.9  # the vote this test is about
    assert page.rotation == 0
    assert word_recall([line], page.text) >= WORD_RECALL


def test_lone_row_parts_are_lines_and_table_cells_are_tab_separated() -> None:
    """A header's left and right parts become two lines; a table's cells keep their tabs."""

    def box(x: float, y: float, width: float) -> list[list[float]]:
        return [[x, y], [x + width, y], [x + width, y + 40], [x, y + 40]]

    header = [box(100, 50, 300), box(1200, 50, 300)]
    table = [box(x, 300 + 60 * row, 150) for row in range(3) for x in (100, 700, 1300)]
    texts = ["Service Manual", "Page 17", *(f"cell {k}" for k in range(9))]
    page = assemble_page(
        Image.new("RGB", (1654, 800)),
        np.array(header + table, dtype=np.float32),
        texts,
        [0.9] * len(texts),
        0,
        {},
    )
    assert page.text.split("\n\n") == [
        "Service Manual\nPage 17",
        "cell 0\tcell 1\tcell 2\ncell 3\tcell 4\tcell 5\ncell 6\tcell 7\tcell 8",
    ]
