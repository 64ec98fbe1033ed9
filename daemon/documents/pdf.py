"""PDF inputs rendered by pdfium into RGB pages, at a resolution that fits the limits.

The render scale comes from the page size in points, so a 5 m x 5 m page never
exists as a full-size bitmap. pdfium is not thread-safe: one thread per process
uses it (the worker is single-threaded).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from daemon.documents.decoding import POINTS_PER_INCH, BadInputError, Page, decoding
from daemon.settings import LimitsSettings

# pdfium keeps page sizes as float32: an A4 scan made at 200 DPI (1654 px wide,
# 595.44 pt) reads back as 595.4400024 pt, and ceil(size x scale) then gives a
# bitmap one pixel wider than the scan. pdfium stretches the page to fill it,
# which resamples every glyph and cost the recogniser word spaces (5 % of the
# words on the benchmark's PDF, docs/benchmarks.md (d)). A scale one part per
# million lower drops only such a sliver of a pixel, so the scan's own pixel
# grid comes back.
_FLOAT32_SLACK = 1 - 1e-6


def nominal_scale(dpi: int) -> float:
    """Pixels per point for rendering at `dpi` (see _FLOAT32_SLACK)."""
    return dpi / POINTS_PER_INCH * _FLOAT32_SLACK


def pdf_render_scale(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> float:
    """Pixels per point to render a page at `dpi`, or lower so the bitmap fits `max_pixels`.

    Uses pdfium's own rounding (ceil of size x scale), so the bitmap that pypdfium2
    allocates for this scale is guaranteed to fit.
    """
    if not (
        math.isfinite(width_pt) and math.isfinite(height_pt) and width_pt > 0 and height_pt > 0
    ):
        raise BadInputError("corrupt", f"a PDF page has an invalid size ({width_pt} x {height_pt})")

    def bitmap_pixels(scale: float) -> int:
        return math.ceil(width_pt * scale) * math.ceil(height_pt * scale)

    scale = nominal_scale(dpi)
    if bitmap_pixels(scale) <= max_pixels:
        return scale
    scale = math.sqrt(max_pixels / (width_pt * height_pt))
    for _ in range(100):
        pixels = bitmap_pixels(scale)
        if pixels <= max_pixels:
            return scale
        scale *= min(0.999, math.sqrt(max_pixels / pixels))
    raise BadInputError(
        "page_too_large",
        f"a {width_pt:g} x {height_pt:g} pt PDF page cannot be rendered within "
        f"limits.max_page_pixels ({max_pixels:,})",
    )


_PDF_LOAD_ERRORS = {
    pdfium_c.FPDF_ERR_PASSWORD: (
        "encrypted",
        "the PDF is encrypted and needs a password to open; save it without a password",
    ),
    pdfium_c.FPDF_ERR_SECURITY: (
        "encrypted",
        "the PDF uses a security (encryption) handler that cannot be opened",
    ),
    pdfium_c.FPDF_ERR_FORMAT: (
        "corrupt",
        "the PDF structure is damaged: no readable cross-reference table or document catalog",
    ),
    pdfium_c.FPDF_ERR_FILE: ("corrupt", "the PDF cannot be read (file error)"),
}


class PdfPages:
    """pdfium-rendered pages. pdfium is not thread-safe: one thread per process uses it."""

    def __init__(self, data: bytes, limits: LimitsSettings) -> None:
        # pdfium reads from this buffer for as long as the document is open.
        self._data = data
        self._limits = limits
        # The raw loader, not pdfium.PdfDocument(bytes): that helper reports a
        # zero-page PDF as a load failure (and leaks the handle), and we need to
        # tell "no pages" from "damaged".
        handle = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
        if not handle:
            error = pdfium_c.FPDF_GetLastError()
            code, message = _PDF_LOAD_ERRORS.get(
                error, ("corrupt", f"pdfium cannot open the PDF (error {error})")
            )
            raise BadInputError(code, message)
        self._pdf = pdfium.PdfDocument(handle)
        self.page_count: int = len(self._pdf)
        if self.page_count < 1:
            self.close()
            raise BadInputError("no_pages", "the PDF has no pages")
        # Filled-in form fields are text a reader sees; render them too.
        with contextlib.suppress(pdfium.PdfiumError):
            self._pdf.init_forms()

    def pages(self, count: int) -> Iterator[Page]:
        for index in range(count):
            yield self._page(index)

    def _page(self, index: int) -> Page:
        dpi = self._limits.pdf_dpi
        max_pixels = self._limits.max_page_pixels
        where = f"page {index + 1} of {self.page_count}"
        with decoding("pdf", where, [], page=index):
            page = self._pdf[index]
            try:
                width_pt, height_pt = page.get_size()
                scale = pdf_render_scale(width_pt, height_pt, dpi, max_pixels)
                bitmap = page.render(scale=scale, rev_byteorder=True, may_draw_forms=True)
                try:
                    # An RGB bitmap is copied by Pillow, so closing the bitmap is safe.
                    image = bitmap.to_pil()
                    if image.mode != "RGB":
                        image = image.convert("RGB")
                finally:
                    bitmap.close()
            finally:
                page.close()
        full_scale = nominal_scale(dpi)
        notes: tuple[str, ...] = ()
        if scale < full_scale:
            full = (math.ceil(width_pt * full_scale), math.ceil(height_pt * full_scale))
            notes = (
                f"rendered at {scale * POINTS_PER_INCH:.1f} DPI instead of {dpi} "
                f"({image.width}x{image.height} instead of {full[0]}x{full[1]}) "
                f"to fit limits.max_page_pixels ({max_pixels:,})",
            )
        return Page(index=index, image=image, scale=min(1.0, scale / full_scale), notes=notes)

    def close(self) -> None:
        self._pdf.close()
        self._data = b""
