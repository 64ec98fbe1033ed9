"""NAME.ocr.txt and NAME.ocr.hocr from a result, and the JSON's words and text-layer record."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from daemon.outputs import content
from daemon.outputs.content import plain_text
from daemon.outputs.hocr import hocr
from daemon.protocol import (
    Block,
    DocumentResult,
    EngineInfo,
    Line,
    PageResult,
    PageText,
    SearchablePdf,
    Word,
)
from daemon.tasks import FileTask

XHTML = "{http://www.w3.org/1999/xhtml}"


def quad(x0: float, y0: float, x1: float, y1: float):  # type: ignore[no-untyped-def]
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


WORDS = (Word("Invoice", quad(10, 10, 80, 30), 0.98), Word("48213", quad(90, 10, 150, 30), 0.9))
LINE = Line("Invoice 48213", quad(10, 10, 150, 30), 0.94, WORDS)


def result(*texts: PageText, pdf: SearchablePdf | None = None) -> DocumentResult:
    return DocumentResult(
        sha256="a" * 64,
        size=1,
        format="pdf",
        page_count=len(texts),
        pages=tuple(PageResult(i, 200, 100, text, 0.1) for i, text in enumerate(texts)),
        open_seconds=0.0,
        inference_seconds=0.1,
        engine=EngineInfo(engine="faulty", model="known"),
        pdf=pdf,
    )


def test_plain_text_separates_pages_with_a_form_feed() -> None:
    """The .ocr.txt has each page's text, a form feed between pages, no Markdown."""
    text = plain_text(
        result(PageText("Invoice 48213", (LINE,)), PageText("## Total\n\n**42** crates"))
    )
    assert text == "Invoice 48213\fTotal\n\n42 crates\n"


def test_hocr_is_xhtml_with_pages_lines_and_words() -> None:
    """The .ocr.hocr parses as XML, with ocr_page, ocr_line and ocrx_word carrying bbox and x_wconf."""
    blocks = PageText("Total due", blocks=(Block("text", "Total due", (5, 50, 120, 90)),))
    markdown = PageText("# Heading\n\nbody text")
    root = ElementTree.fromstring(
        hocr(result(PageText(LINE.text, (LINE,)), blocks, markdown), "a&b.pdf")
    )
    meta = {m.get("name"): m.get("content") for m in root.iter(f"{XHTML}meta")}
    assert "ocrx_word" in (meta["ocr-capabilities"] or "")
    pages = [e for e in root.iter(f"{XHTML}div") if e.get("class") == "ocr_page"]
    assert len(pages) == 3
    assert pages[0].get("title") == 'image "a&b.pdf"; bbox 0 0 200 100; ppageno 0'
    words = [e for e in pages[0].iter(f"{XHTML}span") if e.get("class") == "ocrx_word"]
    assert [(w.text, w.get("title")) for w in words] == [
        ("Invoice", "bbox 10 10 80 30; x_wconf 98"),
        ("48213", "bbox 90 10 150 30; x_wconf 90"),
    ]
    areas = [e for e in pages[1].iter(f"{XHTML}div") if e.get("class") == "ocr_carea"]
    assert areas[0].get("title") == "bbox 5 50 120 90"
    lines = [e.text for e in pages[2].iter(f"{XHTML}span") if e.get("class") == "ocr_line"]
    assert lines == ["Heading", "body text"]


def test_json_has_words_and_says_how_each_pdf_page_got_its_layer() -> None:
    """lines[].words[] carry boxes in upright-page pixels; pages say what their PDF layer came from."""
    pdf = SearchablePdf(b"%PDF", "input_pdf", ("words", "existing_text"), 0.01)
    task = FileTask(Path("/in/a.pdf"), Path("/in"), "a" * 64, 1, 1, 0.0, 0.0)
    document = content.success(
        task, result(PageText(LINE.text, (LINE,)), PageText("x", (LINE,)), pdf=pdf), "known", {}
    )
    first = document["pages"][0]
    assert first["lines"][0]["words"][1] == {
        "text": "48213",
        "box": [[90, 10], [150, 10], [150, 30], [90, 30]],
        "confidence": 0.9,
    }
    assert [page["pdf_text_layer"] for page in document["pages"]] == ["words", "existing_text"]
    assert document["pdf"]["pages_with_existing_text"] == [1]
    assert document["pdf"]["source"] == "input_pdf"
