"""NAME.ocr.pdf: the input's own pages with an invisible text layer over each.

Built in the worker, which already holds the input: parsing untrusted bytes
never happens in the supervisor. A PDF input keeps its pages as they are
(pikepdf, i.e. qpdf, copies every object; streams are not decoded or
re-encoded): the page's content is wrapped in q/Q so that nothing it leaves
in the graphics state reaches the layer, and the layer is one Form XObject
drawn after it. An image goes into the PDF without re-encoding where img2pdf
can embed it (JPEG bytes as they are; PNG and TIFF losslessly; every page of
a multi-page TIFF) at its own resolution and EXIF orientation. Where it
cannot (an alpha channel, an orientation img2pdf would apply otherwise than
the reader, a page count that does not match), the pages as the engine saw
them are embedded as lossless PNG.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence

import img2pdf
import pikepdf
import pypdfium2 as pdfium
from pikepdf import Dictionary, Name
from pikepdf.canvas import ContentStreamBuilder
from PIL import Image

from daemon.documents.decoding import BadInputError, Page
from daemon.page_text import upright_size
from daemon.protocol import PageResult, PdfRequest, SearchablePdf
from daemon.searchable_pdf import font, geometry, text_layer

FONT_RESOURCE = Name("/OcrInboxGlyphless")
_EXIF_ORIENTATION = 0x0112
_MIRRORED = frozenset({2, 4, 5, 7})
DEFAULT_DPI = 96.0


class PdfBuilder:
    """Gathers what the searchable PDF needs while the worker reads a document."""

    def __init__(self, data: bytes, format: str, page_count: int, request: PdfRequest) -> None:
        self._data = data
        self._page_count = page_count
        self._format = format
        self._request = request
        self._started = time.monotonic()
        self._base: bytes | None = None
        self._source = "input_pdf"
        self._page_pngs: list[bytes] = []
        self._dpi: tuple[float, float] | None = None
        if format != "pdf":
            self._base = self._embed_as_is()
            self._source = "image_as_is" if self._base is not None else "image_lossless"
        self._spent = time.monotonic() - self._started

    @property
    def needs_pages(self) -> bool:
        """Whether keep_page() must see every page (the input cannot be embedded as it is)."""
        return self._format != "pdf" and self._base is None

    def keep_page(self, page: Page) -> None:
        """Keep a lossless copy of the page as the engine reads it."""
        started = time.monotonic()
        buffer = io.BytesIO()
        # The page keeps its size on paper: the image's DPI (img2pdf's 96
        # without one), lowered with the pixels where the limits shrank it.
        x_dpi, y_dpi = self._dpi or (DEFAULT_DPI, DEFAULT_DPI)
        dpi = (x_dpi * page.scale, y_dpi * page.scale)
        page.image.save(buffer, format="PNG", compress_level=1, dpi=dpi)
        self._page_pngs.append(buffer.getvalue())
        self._spent += time.monotonic() - started

    def finish(self, pages: Sequence[PageResult]) -> SearchablePdf:
        """Lay each page's text over the input's pages; the finished file's bytes."""
        started = time.monotonic()
        if self._format == "pdf":
            base = self._data
        elif self._base is not None:
            base = self._base
        else:
            base = bytes(img2pdf.convert(self._page_pngs))
        try:
            with pikepdf.open(io.BytesIO(base)) as pdf:
                has_text = _pages_with_text(base) if self._format == "pdf" else set()
                layers = _lay_text(pdf, pages, has_text, self._request)
                output = io.BytesIO()
                # Streams are copied as they are: the pages' own content stays byte for byte.
                pdf.save(
                    output,
                    compress_streams=True,
                    stream_decode_level=pikepdf.StreamDecodeLevel.none,
                    object_stream_mode=pikepdf.ObjectStreamMode.preserve,
                )
        except pikepdf.PasswordError as error:
            raise BadInputError(
                "encrypted", f"the PDF cannot be rewritten as a searchable PDF: {error}"
            ) from error
        except (pikepdf.PdfError, pikepdf.DataDecodingError, pdfium.PdfiumError) as error:
            raise BadInputError(
                "corrupt",
                f"the PDF was read for OCR but cannot be rewritten as a searchable PDF: {error}",
            ) from error
        seconds = self._spent + time.monotonic() - started
        return SearchablePdf(output.getvalue(), self._source, layers, seconds)

    def _embed_as_is(self) -> bytes | None:
        """img2pdf's PDF of the input, or None when it cannot take it as it is."""
        try:
            with Image.open(io.BytesIO(self._data)) as image:
                dpi = image.info.get("dpi")
                if isinstance(dpi, tuple) and len(dpi) == 2 and all(dpi):
                    self._dpi = (float(dpi[0]), float(dpi[1]))
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        except Exception:
            return None  # the reader decides whether the input is bad; here: embed losslessly
        if orientation in _MIRRORED or (self._format != "jpeg" and orientation != 1):
            return None
        try:
            embedded = bytes(img2pdf.convert(self._data, rotation=img2pdf.Rotation.ifvalid))
        except Exception:
            return None  # alpha channel, an unusual mode: the pages go in as lossless PNG
        with pikepdf.open(io.BytesIO(embedded)) as pdf:
            # An animated GIF gives a page per frame; the reader reads the first only.
            if len(pdf.pages) != self._page_count:
                return None
        return embedded


def _pages_with_text(data: bytes) -> set[int]:
    """Indexes of the pages that already have text (a text layer or real text)."""
    found: set[int] = set()
    document = pdfium.PdfDocument(data)
    try:
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    if textpage.count_chars() > 0:
                        found.add(index)
                finally:
                    textpage.close()
            finally:
                page.close()
    finally:
        document.close()
    return found


def _lay_text(
    pdf: pikepdf.Pdf, pages: Sequence[PageResult], has_text: set[int], request: PdfRequest
) -> tuple[str, ...]:
    glyphless: pikepdf.Object | None = None
    layers: list[str] = []
    for result in pages:
        if result.index in has_text and not request.over_existing_text:
            layers.append("existing_text")
            continue
        text = result.text
        upright = upright_size(text.details, result.width, result.height, text.rotation)
        content, mode = text_layer.build(text, upright, FONT_RESOURCE)
        layers.append(mode)
        if content is None:
            continue
        if glyphless is None:
            glyphless = font.add_glyphless_font(pdf)
        _overlay(pdf, pdf.pages[result.index], content, glyphless, upright, text.rotation)
    return tuple(layers)


def _overlay(
    pdf: pikepdf.Pdf,
    page: pikepdf.Page,
    content: bytes,
    glyphless: pikepdf.Object,
    upright: tuple[int, int],
    rotation: int,
) -> None:
    """Draw `content` (in upright-page pixels) over the page, after its own content."""
    shown = geometry.given_size((float(upright[0]), float(upright[1])), rotation)
    to_user = geometry.compose(
        geometry.upright_to_given((float(upright[0]), float(upright[1])), rotation),
        geometry.shown_to_user_space(
            [float(value) for value in page.cropbox], int(page.obj.get(Name.Rotate, 0)), shown
        ),
    )
    form = pdf.make_stream(
        content,
        Type=Name.XObject,
        Subtype=Name.Form,
        BBox=[0, 0, upright[0], upright[1]],
        Matrix=[round(value, 8) for value in to_user],
        Resources=Dictionary(Font=Dictionary({str(FONT_RESOURCE): glyphless})),
    )
    name = page.add_resource(form, Name.XObject, prefix="OcrInboxText")
    before = ContentStreamBuilder()
    before.push()
    after = ContentStreamBuilder()
    after.pop()
    after.draw_xobject(name)
    # The page's own content between q and Q: a transformation or clip it
    # leaves behind cannot move or hide the layer.
    page.contents_add(before.build(), prepend=True)
    page.contents_add(after.build(), prepend=False)
