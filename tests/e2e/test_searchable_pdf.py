"""End to end: `[outputs] formats` with the searchable PDF, through the running daemon."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import ImageChops

from bench.textmetrics import cer
from harness import pages
from harness.driver import base_settings, outputs_of, read_json, running_daemon
from harness.drops import faulty_settings, place
from tests.support.pdf_tools import (
    answer_for,
    iou,
    pdftotext,
    pdftotext_words,
    qpdf_check,
    render_pages,
)

pytestmark = pytest.mark.slow

PAGE_ONE = ("Invoice number 48213 for the harbour office", "Delivered twelve boxes of copper wire")
PAGE_TWO = ("Second page lists seven wooden crates", "Signed by the quartermaster")
CYRILLIC = ("Счёт номер 48213 для портовой конторы", "Доставлено двенадцать ящиков")
CJK = ("中文文本测试", "東京都の請求書")
ALL_FORMATS = '["md","json","txt","hocr","pdf"]'


def small(lines: tuple[str, ...]):  # type: ignore[no-untyped-def]
    return pages.render_known_words(lines, width=1240, height=900, font_px=36, margin=60)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded engine with every format chosen through the environment."""
    root = tmp_path_factory.mktemp("searchable")
    inbox = root / "inbox"
    inbox.mkdir()
    (one, _), (two, _) = small(PAGE_ONE), small(PAGE_TWO)
    files: dict[str, Path] = {}
    env = {"OCR_INBOX_OUTPUTS__FORMATS": ALL_FORMATS}
    # Frequent rescans: the check that our own PDFs are not taken as inputs waits for one.
    settings = base_settings(inbox, root / "state", watch={"rescan_interval_seconds": 2.0})
    with running_daemon(root, settings, env=env) as daemon:
        daemon.wait_ready(timeout=120)
        files["pdf"] = place(inbox / "scan.pdf", lambda path: pages.save_pdf([one, two], path))
        files["sideways"] = place(
            inbox / "sideways.png", lambda path: pages.save_png(one.rotate(90, expand=True), path)
        )
        files["broken"] = place(
            inbox / "broken.pdf",
            lambda path: path.write_bytes(b"%PDF-1.7\n1 0 obj <<"),
        )
        daemon.wait_for("file.done", count=2, timeout=600)
        daemon.wait_for("file.failed", count=1, timeout=120)
        # The searchable PDFs now in the inbox are our outputs, never inputs.
        daemon.wait_for_rescans(1, timeout=120)
        assert len(daemon.find("file.done")) == 2
    return files


def test_every_chosen_format_is_written_and_listed(embedded: dict[str, Path]) -> None:
    """md, json, txt, hocr and pdf exist for each input, and the JSON lists each with its hash."""
    for kind in ("pdf", "sideways"):
        found = outputs_of(embedded[kind])
        assert set(found) == {"md", "json", "txt", "hocr", "pdf"}
        listed = read_json(found["json"])["outputs"]
        for format in ("md", "txt", "hocr", "pdf"):
            digest = hashlib.sha256(found[format].read_bytes()).hexdigest()
            assert listed[format]["sha256"] == digest


def test_the_pdf_reads_back_as_the_text_and_keeps_its_pages(
    embedded: dict[str, Path], tmp_path: Path
) -> None:
    """pdftotext of NAME.ocr.pdf is the .ocr.txt (CER <= 0.01); qpdf is clean; pages render as the input's."""
    found = outputs_of(embedded["pdf"])
    assert cer(found["txt"].read_text(), pdftotext(found["pdf"])) <= 0.01
    checked = qpdf_check(found["pdf"])
    assert checked.returncode == 0 and "WARNING" not in checked.stdout + checked.stderr
    before = render_pages(embedded["pdf"], tmp_path / "before", dpi=100)
    after = render_pages(found["pdf"], tmp_path / "after", dpi=100)
    assert len(before) == len(after) == 2
    for original, layered in zip(before, after, strict=True):
        assert ImageChops.difference(original, layered).getbbox() is None


def test_pdf_words_sit_on_the_json_word_boxes(embedded: dict[str, Path]) -> None:
    """pdftotext -bbox word boxes, in page pixels, overlap the JSON's lines[].words[] (IoU >= 0.5 for 95%)."""
    found = outputs_of(embedded["pdf"])
    document = read_json(found["json"])
    extracted = pdftotext_words(found["pdf"])
    total = good = 0
    for page in document["pages"]:
        assert page["pdf_text_layer"] == "words"
        on_page = [word for word in extracted if word.page == page["index"]]
        for line in page["lines"]:
            for word in line["words"]:
                total += 1
                xs = [x for x, _ in word["box"]]
                ys = [y for _, y in word["box"]]
                box = (min(xs), min(ys), max(xs), max(ys))
                scale = page["width"] / on_page[0].page_size[0]
                good += any(
                    found_word.text == word["text"]
                    and iou(tuple(v * scale for v in found_word.box), box) >= 0.5
                    for found_word in on_page
                )
    assert total >= 10
    assert good >= 0.95 * total


def test_a_sideways_scan_is_searchable_by_its_words(embedded: dict[str, Path]) -> None:
    """The sideways PNG's PDF shows the page as scanned and is found by each of its words."""
    extracted = pdftotext(outputs_of(embedded["sideways"])["pdf"])
    words = " ".join(PAGE_ONE).split()
    assert sum(word in extracted for word in words) >= 0.9 * len(words)


def test_a_broken_pdf_gets_only_its_error_sidecar(embedded: dict[str, Path]) -> None:
    """An unreadable PDF ends with its error sidecar and no part of a set."""
    assert set(outputs_of(embedded["broken"])) == {"error"}


def test_cyrillic_and_cjk_pages_are_searchable(tmp_path: Path) -> None:
    """Pages a test engine reads as known Cyrillic and CJK text are found by that text in the PDF."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (cyrillic, cyrillic_lines), (cjk, cjk_lines) = small(CYRILLIC), small(CJK)
    settings = faulty_settings(
        inbox,
        tmp_path / "state",
        answers=[answer_for("cyrillic*", cyrillic_lines), answer_for("cjk*", cjk_lines)],
    )
    settings["outputs"] = {"formats": ["md", "json", "pdf"]}
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=60)
        place(inbox / "cyrillic.png", lambda path: pages.save_png(cyrillic, path))
        place(inbox / "cjk.pdf", lambda path: pages.save_pdf([cjk], path))
        daemon.wait_for("file.done", count=2, timeout=120)
    for name, lines in (("cyrillic.png", CYRILLIC), ("cjk.pdf", CJK)):
        found = outputs_of(inbox / name)
        assert set(found) == {"md", "json", "pdf"}
        extracted = pdftotext(found["pdf"])
        for line in lines:
            assert line in extracted, (line, extracted)
