"""The searchable PDF, read back as a reader would: text, word positions, rendering, structure."""

from __future__ import annotations

import io
from pathlib import Path

import pikepdf
import pytest
from PIL import Image, ImageChops

from bench.textmetrics import cer
from daemon.documents.decoding import Page
from daemon.outputs.content import plain_text
from daemon.protocol import (
    Block,
    DocumentResult,
    EngineInfo,
    PageResult,
    PageText,
    PdfRequest,
    SearchablePdf,
)
from daemon.searchable_pdf.assemble import PdfBuilder
from daemon.searchable_pdf.geometry import apply, upright_to_given
from daemon.settings import KnownAnswer
from daemon.worker.engines.faulty import known_page
from harness import pages
from harness.pages import DrawnLine
from tests.support.pdf_tools import (
    answer_for,
    iou,
    pdftotext,
    pdftotext_words,
    qpdf_check,
    render_pages,
)

ENGLISH = (
    "Invoice number 48213 for the harbour office",
    "Delivered twelve boxes of copper wire today",
)
SECOND = ("Second page lists seven wooden crates", "Signed by the quartermaster")
CYRILLIC = ("Счёт номер 48213 для портовой конторы", "Доставлено двенадцать ящиков")
CJK = ("中文文本测试", "東京都の請求書")
WIDTH, HEIGHT = 1240, 900


def drawn(lines: tuple[str, ...]) -> tuple[Image.Image, list[DrawnLine]]:
    return pages.render_known_words(lines, width=WIDTH, height=HEIGHT, font_px=36, margin=60)


def page_result(
    index: int, lines: list[DrawnLine], size: tuple[int, int], rotation: int = 0
) -> PageResult:
    """What an engine that read `lines` exactly where they were drawn would return."""
    text = known_page(KnownAnswer.model_validate(answer_for("*", lines)))
    upright = (WIDTH, HEIGHT)
    text = PageText(
        text.text, text.lines, rotation=rotation, details={"upright_size": list(upright)}
    )
    return PageResult(index=index, width=size[0], height=size[1], text=text, seconds=0.0)


def build(
    data: bytes,
    format: str,
    results: list[PageResult],
    page_count: int | None = None,
    images: list[Image.Image] | None = None,
    request: PdfRequest | None = None,
) -> SearchablePdf:
    builder = PdfBuilder(data, format, page_count or len(results), request or PdfRequest())
    if builder.needs_pages:
        for index, image in enumerate(images or []):
            builder.keep_page(Page(index, image, 1.0))
    return builder.finish(results)


def document(results: list[PageResult]) -> DocumentResult:
    return DocumentResult(
        sha256="0" * 64,
        size=0,
        format="pdf",
        page_count=len(results),
        pages=tuple(results),
        open_seconds=0.0,
        inference_seconds=0.0,
        engine=EngineInfo(engine="faulty", model="known"),
    )


def pdf_bytes(images: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    first, *rest = images
    first.save(buffer, format="PDF", save_all=True, append_images=rest, resolution=200)
    return buffer.getvalue()


def save(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_pdf_input_keeps_its_pages_and_reads_back_as_the_text(tmp_path: Path) -> None:
    """A scanned PDF: pdftotext gives the .ocr.txt (CER <= 0.01), qpdf finds no fault, pages render identically."""
    one, first = drawn(ENGLISH)
    two, second = drawn(SECOND)
    source = save(tmp_path, "scan.pdf", pdf_bytes([one, two]))
    results = [page_result(0, first, one.size), page_result(1, second, two.size)]
    searchable = build(source.read_bytes(), "pdf", results)
    output = save(tmp_path, "scan.pdf.ocr.pdf", searchable.data)

    assert searchable.source == "input_pdf"
    assert searchable.layers == ("words", "words")
    extracted = pdftotext(output)
    assert extracted.count("\f") == 2
    expected = plain_text(document(results))
    assert cer(expected, extracted) <= 0.01, (expected, extracted)
    checked = qpdf_check(output)
    assert checked.returncode == 0 and "WARNING" not in checked.stdout + checked.stderr, checked
    before = render_pages(source, tmp_path / "before", dpi=100)
    after = render_pages(output, tmp_path / "after", dpi=100)
    assert len(before) == len(after) == 2
    for original, layered in zip(before, after, strict=True):
        assert ImageChops.difference(original, layered).getbbox() is None


def test_word_boxes_fall_on_the_drawn_words(tmp_path: Path) -> None:
    """pdftotext -bbox word boxes, in page pixels, overlap the words' boxes (IoU >= 0.5 for 95%)."""
    image, lines = drawn(ENGLISH + SECOND)
    output = save(
        tmp_path,
        "out.pdf",
        build(pdf_bytes([image]), "pdf", [page_result(0, lines, image.size)]).data,
    )
    extracted = pdftotext_words(output)
    expected = [word for line in lines for word in line.words]
    assert [word.text for word in extracted] == [word.text for word in expected]
    good = 0
    for found, word in zip(extracted, expected, strict=True):
        scale = WIDTH / found.page_size[0]
        in_pixels = tuple(value * scale for value in found.box)
        good += iou(in_pixels, word.box) >= 0.5
    assert good >= 0.95 * len(expected)


def test_a_turned_pdf_page_carries_its_layer_as_it_is_shown(tmp_path: Path) -> None:
    """A page with /Rotate 90, turned upright for OCR: its words are found where the viewer shows them."""
    image, lines = drawn(ENGLISH)
    with pikepdf.open(io.BytesIO(pdf_bytes([image]))) as pdf:
        pdf.pages[0].obj.Rotate = 90
        buffer = io.BytesIO()
        pdf.save(buffer)
    shown = (HEIGHT, WIDTH)  # the viewer (and pdfium) show the page turned clockwise
    # The engine turns the shown page a further 270 degrees clockwise to read it.
    result = page_result(0, lines, shown, rotation=270)
    output = save(tmp_path, "turned.pdf", build(buffer.getvalue(), "pdf", [result]).data)
    extracted = pdftotext_words(output)
    back = upright_to_given((WIDTH, HEIGHT), 270)
    good = 0
    words = [word for line in lines for word in line.words]
    for word in words:
        corners = [
            apply(back, x, y)
            for x in (word.box[0], word.box[2])
            for y in (word.box[1], word.box[3])
        ]
        expected = (
            min(x for x, _ in corners),
            min(y for _, y in corners),
            max(x for x, _ in corners),
            max(y for _, y in corners),
        )
        match = [w for w in extracted if w.text == word.text]
        assert match, word.text
        # pdftotext gives boxes on the page as shown, but the page size before /Rotate.
        scale = WIDTH / match[0].page_size[0]
        good += iou(tuple(v * scale for v in match[0].box), expected) >= 0.5
    assert good >= 0.95 * len(words)


def test_a_sideways_scan_is_searchable_by_its_words(tmp_path: Path) -> None:
    """A PNG scanned sideways (read after turning it 90 degrees clockwise) is found by every word."""
    image, lines = drawn(ENGLISH)
    sideways = image.rotate(90, expand=True)  # PIL turns counter-clockwise
    result = page_result(0, lines, sideways.size, rotation=90)
    searchable = build(pages.png_bytes(sideways), "png", [result])
    extracted = pdftotext(save(tmp_path, "sideways.pdf", searchable.data))
    for line in ENGLISH:
        for word in line.split():
            assert word in extracted, (word, extracted)


@pytest.mark.parametrize("lines", [CYRILLIC, CJK], ids=["cyrillic", "cjk"])
def test_any_script_is_searchable(tmp_path: Path, lines: tuple[str, ...]) -> None:
    """Cyrillic words and CJK lines (characters without spaces) come back from pdftotext as written."""
    image, drawn_lines = drawn(lines)
    searchable = build(pdf_bytes([image]), "pdf", [page_result(0, drawn_lines, image.size)])
    extracted = pdftotext(save(tmp_path, "script.pdf", searchable.data))
    for line in lines:
        assert line in extracted, (line, extracted)


def test_a_page_with_text_keeps_its_own_unless_forced(tmp_path: Path) -> None:
    """A page that already has a text layer gets no second one by default; the setting forces one."""
    image, lines = drawn(ENGLISH)
    result = page_result(0, lines, image.size)
    once = build(pdf_bytes([image]), "pdf", [result]).data
    again = build(once, "pdf", [result])
    assert again.layers == ("existing_text",)
    assert pdftotext(save(tmp_path, "again.pdf", again.data)).count("Invoice") == 1
    forced = build(once, "pdf", [result], request=PdfRequest(over_existing_text=True))
    assert forced.layers == ("words",)
    # (poppler drops text drawn twice in one place, so the layers are counted.)
    assert text_layers(again.data) == 1
    assert text_layers(forced.data) == 2


def text_layers(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        names = pdf.pages[0].resources.get("/XObject", {}).keys()
        return sum(1 for name in names if name.startswith("/OcrInboxText"))


def test_a_jpeg_goes_in_as_its_own_bytes(tmp_path: Path) -> None:
    """A JPEG photo is embedded without re-encoding: the PDF's image stream is the file's bytes."""
    image, lines = drawn(ENGLISH)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    data = buffer.getvalue()
    searchable = build(data, "jpeg", [page_result(0, lines, image.size)])
    assert searchable.source == "image_as_is"
    with pikepdf.open(io.BytesIO(searchable.data)) as pdf:
        streams = [image.read_raw_bytes() for image in pdf.pages[0].get_images().values()]
    assert streams == [data]


def test_an_animated_gif_goes_in_losslessly_as_read(tmp_path: Path) -> None:
    """An image img2pdf would not embed as the engine read it (every GIF frame a page) goes in as read, pixel for pixel."""
    image, lines = drawn(ENGLISH)
    frames = [image.convert("P"), Image.new("RGB", image.size, "white").convert("P")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    read = frames[0].convert("RGB")
    searchable = build(buffer.getvalue(), "gif", [page_result(0, lines, image.size)], images=[read])
    assert searchable.source == "image_lossless"
    with pikepdf.open(io.BytesIO(searchable.data)) as pdf:
        assert len(pdf.pages) == 1
        (embedded,) = pdf.pages[0].get_images().values()
        pixels = pikepdf.PdfImage(embedded).as_pil_image().convert("RGB")
    assert ImageChops.difference(pixels, read).getbbox() is None
    assert "Invoice" in pdftotext(save(tmp_path, "animated.pdf", searchable.data))


def test_a_multipage_tiff_gives_a_page_per_frame(tmp_path: Path) -> None:
    """Every frame of a TIFF becomes a page, each with its own text."""
    one, first = drawn(ENGLISH)
    two, second = drawn(SECOND)
    path = pages.save_multipage_tiff([one, two], tmp_path / "two.tiff")
    results = [page_result(0, first, one.size), page_result(1, second, two.size)]
    searchable = build(path.read_bytes(), "tiff", results)
    assert searchable.source == "image_as_is"
    extracted = pdftotext(save(tmp_path, "two.pdf", searchable.data)).split("\f")
    assert "Invoice" in extracted[0] and "quartermaster" in extracted[1]


def test_text_without_boxes_covers_its_page_or_its_blocks(tmp_path: Path) -> None:
    """A VLM's Markdown goes over the page; its layout blocks' text over each block."""
    image, _ = drawn(ENGLISH)
    markdown = PageText(text="# Harbour office\n\n| Item | Count |\n|---|---|\n| **Crates** | 7 |")
    page = PageResult(0, WIDTH, HEIGHT, markdown, 0.0)
    searchable = build(pdf_bytes([image]), "pdf", [page])
    assert searchable.layers == ("page",)
    extracted = pdftotext(save(tmp_path, "page.pdf", searchable.data))
    assert "Harbour office" in extracted and "Crates 7" in " ".join(extracted.split())
    assert "**" not in extracted and "|" not in extracted

    block_box = (600.0, 500.0, 1100.0, 560.0)
    blocks = PageText(text="Total due", blocks=(Block("text", "Total due", block_box),))
    searchable = build(pdf_bytes([image]), "pdf", [PageResult(0, WIDTH, HEIGHT, blocks, 0.0)])
    assert searchable.layers == ("blocks",)
    words = pdftotext_words(save(tmp_path, "blocks.pdf", searchable.data))
    assert [word.text for word in words] == ["Total", "due"]
    scale = WIDTH / words[0].page_size[0]
    for word in words:
        x0, y0, x1, y1 = (value * scale for value in word.box)
        assert block_box[0] - 1 <= x0 and x1 <= block_box[2] + 1
        assert block_box[1] - 1 <= y0 and y1 <= block_box[3] + 1


def test_a_page_without_text_gets_no_layer(tmp_path: Path) -> None:
    """A blank page is kept as it is and the result says it has no layer."""
    blank = Image.new("RGB", (WIDTH, HEIGHT), "white")
    searchable = build(pdf_bytes([blank]), "pdf", [PageResult(0, WIDTH, HEIGHT, PageText(""), 0.0)])
    assert searchable.layers == ("none",)
    assert qpdf_check(save(tmp_path, "blank.pdf", searchable.data)).returncode == 0
