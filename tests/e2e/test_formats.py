"""End to end with the embedded engine: every supported format, through the running daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import pages
from harness.driver import base_settings, outputs_of, read_json, running_daemon
from harness.drops import place
from harness.pages import recall

pytestmark = pytest.mark.slow

PAGE_ONE = ("Invoice number 48213 for the harbour office", "Delivered twelve boxes of copper wire")
PAGE_TWO = ("Second page lists seven wooden crates", "Signed by the quartermaster")
PAGE_THREE = ("Third page mentions the lighthouse keeper",)


def small_page(lines: tuple[str, ...]):  # type: ignore[no-untyped-def]
    # Half of A4 at 200 DPI keeps the CPU engine quick on a busy 2-core machine.
    return pages.render_page(lines, width=1240, height=900, font_px=36, margin=60)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Drop one file of each kind into a running daemon and wait for every output."""
    root = tmp_path_factory.mktemp("formats")
    inbox = root / "inbox"
    inbox.mkdir()
    one, two, three = small_page(PAGE_ONE), small_page(PAGE_TWO), small_page(PAGE_THREE)
    settings = base_settings(inbox, root / "state")
    files: dict[str, Path] = {}
    with running_daemon(root, settings) as daemon:
        daemon.wait_ready(timeout=120)
        files["png"] = place(inbox / "plain.png", lambda path: pages.save_png(one, path))
        files["palette"] = place(
            inbox / "palette.png", lambda path: pages.save_palette_png(one, path)
        )
        files["bilevel"] = place(
            inbox / "bilevel.tif", lambda path: pages.save_bilevel_tiff(one, path)
        )
        files["multitiff"] = place(
            inbox / "two-pages.tiff", lambda path: pages.save_multipage_tiff([one, two], path)
        )
        files["exif"] = place(
            inbox / "camera.jpg",
            lambda path: pages.save_jpeg_with_orientation(one, path, orientation=6),
        )
        files["pdf"] = place(
            inbox / "three-pages.pdf", lambda path: pages.save_pdf([one, two, three], path)
        )
        files["sideways"] = place(
            inbox / "sideways.png", lambda path: pages.save_png(one.rotate(90, expand=True), path)
        )
        daemon.wait_for("file.done", count=len(files), timeout=600)
        assert not daemon.find("file.failed")
    return files


@pytest.mark.parametrize("kind", ["png", "palette", "bilevel", "exif"])
def test_single_page_formats_hold_the_known_words(processed: dict[str, Path], kind: str) -> None:
    """PNG, palette PNG, 1-bit TIFF and a sideways-stored EXIF JPEG come out with the drawn words."""
    found = outputs_of(processed[kind])
    assert set(found) == {"md", "json"}
    text = found["md"].read_text()
    assert recall(PAGE_ONE, text) >= 0.9, text


def test_multipage_tiff_has_every_page(processed: dict[str, Path]) -> None:
    """Every page of a multi-page TIFF is recognised, in order."""
    document = read_json(outputs_of(processed["multitiff"])["json"])
    assert document["input"]["pages"] == 2
    assert [page["index"] for page in document["pages"]] == [0, 1]
    assert recall(PAGE_ONE, document["pages"][0]["text"]) >= 0.9
    assert recall(PAGE_TWO, document["pages"][1]["text"]) >= 0.9


def test_multipage_pdf_has_every_page(processed: dict[str, Path]) -> None:
    """A three-page PDF gives three pages of text, separated in the Markdown."""
    found = outputs_of(processed["pdf"])
    document = read_json(found["json"])
    assert document["input"]["format"] == "pdf"
    assert len(document["pages"]) == 3
    markdown = found["md"].read_text()
    assert markdown.count("\n---\n") == 2
    for page, expected in zip(document["pages"], (PAGE_ONE, PAGE_TWO, PAGE_THREE), strict=True):
        assert recall(expected, page["text"]) >= 0.9


def test_json_describes_engine_lines_and_input(processed: dict[str, Path]) -> None:
    """The JSON names engine, device and dtype, holds lines with boxes and confidences, and the input hash."""
    import hashlib

    source = processed["png"]
    document = read_json(outputs_of(source)["json"])
    assert document["generator"] == "ocr-inbox"
    assert document["input"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert document["model"]["engine"] == "rapid"
    assert document["model"]["device"] == "cpu"
    lines = document["pages"][0]["lines"]
    assert len(lines) >= 2
    for line in lines:
        assert len(line["box"]) == 4
        assert 0.0 <= line["confidence"] <= 1.0
    assert {"queue_seconds", "inference_seconds", "total_seconds"} <= set(document["timings"])


def test_inputs_are_never_modified(processed: dict[str, Path]) -> None:
    """Every input is byte-for-byte what the worker read when it processed it."""
    import hashlib

    for source in processed.values():
        document = read_json(outputs_of(source)["json"])
        assert document["input"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert document["input"]["size"] == source.stat().st_size


def test_sideways_scan_is_turned_upright(processed: dict[str, Path]) -> None:
    """A page scanned sideways is read upright; the JSON's size is the frame its boxes are in."""
    document = read_json(outputs_of(processed["sideways"])["json"])
    page = document["pages"][0]
    assert page["rotation"] in (90, 270)
    assert (page["width"], page["height"]) == (1240, 900)
    assert recall(PAGE_ONE, page["text"]) >= 0.9
    for line in page["lines"]:
        for x, y in line["box"]:
            assert -2 <= x <= page["width"] + 2 and -2 <= y <= page["height"] + 2
