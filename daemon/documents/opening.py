"""Open an input file's bytes as RGB page images, within the configured limits.

Runs inside the worker process (never imports torch). The content decides the
format, never the file name: a PNG named ``scan.jpg`` is read as a PNG.

Formats and pages

    =======  ==================================================================
    format   pages
    =======  ==================================================================
    png      one page (an animated PNG: the first frame, with a note)
    jpeg     one page; huge JPEGs are reduced while decoding (``Image.draft``)
    tiff     every page (IFD), each normalised on its own (mixed modes are fine)
    webp     one page (an animated WebP: the first frame, with a note)
    bmp      one page
    gif      the first frame only, even when animated (with a note)
    pdf      every page, rendered by pdfium at ``limits.pdf_dpi`` (default 200)
    =======  ==================================================================

Every page comes out as mode ``RGB``: palette (with or without transparency),
1-bit, L, LA, 16-bit grayscale (scaled by 1/257, not clipped), I and F (scaled
from their value range), CMYK (Adobe inverted CMYK JPEGs too), YCbCr, LAB;
transparency is flattened onto white. EXIF (or TIFF/XMP) orientation is applied,
so pages come out upright.

Limits (``daemon.settings.LimitsSettings``)

- ``max_file_bytes``: bigger files are refused before any parsing.
- ``hard_max_page_pixels``: a raster page with more pixels is refused from its
  header, before a single pixel is decoded. Pillow's own decompression-bomb guard
  stays on (``Image.MAX_IMAGE_PIXELS`` is left alone; it refuses images above
  twice its value, 178,956,970 pixels by default, which equals the default hard
  limit), so the effective hard limit is the stricter of the two.
- ``max_page_pixels``: larger pages are downscaled to fit, keeping the aspect
  ratio; ``Page.scale`` < 1 and ``Page.notes`` says from what to what. JPEGs are
  reduced by the decoder (1/2, 1/4, 1/8) before the final resize. PDF pages are
  *rendered* at the lower resolution, computed from the page size in points, so
  a 5 m x 5 m page never exists as a full-size bitmap in memory. PDF pages are
  never refused for size (only a page whose shape cannot fit at all is).
- ``max_pages``: a longer document is not refused: its first ``max_pages`` pages
  are processed and ``Document.notes`` says so ("page limit: 500 of 731 pages
  processed (limits.max_pages)"). An operator gets text for most of a huge
  scan rather than nothing, and the note makes the cut visible in the outputs.

Outcomes: everything ``open_document`` and ``Document.pages()`` raise for bad
data is ``BadInputError`` with one of these codes (a real out-of-memory
``MemoryError`` may still propagate):

    ==================  ========================================================
    code                cause
    ==================  ========================================================
    empty_file          the file has zero bytes
    too_large           the file is bigger than limits.max_file_bytes
    unsupported_format  the content is none of PNG, JPEG, TIFF, WebP, BMP, GIF,
                        PDF (whatever the name says), or a pixel format that has
                        no RGB conversion
    corrupt             the content starts like a supported format but cannot be
                        decoded: truncated (a PNG without its IEND chunk, a JPEG
                        without its end), broken headers or compressed data, a
                        PDF that pdfium cannot parse even after its repair pass,
                        a PDF page that cannot be loaded or has an invalid size
    encrypted           the PDF needs a password to open (or uses a security
                        handler pdfium does not support); a PDF with only an
                        owner (permissions) password opens normally
    no_pages            the PDF opens but its page tree has no pages
    page_too_large      a raster page has more pixels than limits.hard_max_page_pixels
                        (or Pillow's decompression-bomb limit): refused from the
                        header, before decoding; or a PDF page so elongated that
                        no render scale fits limits.max_page_pixels
    ==================  ========================================================

The message is one sentence for a person ("page 2 is 100000x100000 = ... pixels,
more than limits.hard_max_page_pixels ..."); pages are numbered from 1 there,
while ``Page.index`` counts from 0. A blank page is a normal page (a white
image), not an error. Errors inside ``pages()`` come when that page is reached:
earlier pages have already been delivered.

Memory: one page at a time. A raster page is decoded at full size before it is
downscaled (except JPEG, reduced by the decoder), so the peak is about
hard_max_page_pixels x 3 bytes (~540 MB at the default) plus the result; a PDF
page needs at most 2 x max_page_pixels x 3 bytes (pdfium's bitmap and Pillow's
copy of it, ~240 MB at the default), whatever its size in points.

Known gap: libjpeg fills a JPEG whose scan data stops early but which still has
its end marker with gray and only warns; Pillow does not pass that warning on,
so such a file yields a partly gray page rather than "corrupt".

Thread safety: pdfium is not thread-safe, and Pillow's ``LOAD_TRUNCATED_IMAGES``
and the warnings filters used here are process-wide. The worker is
single-threaded and opens one document at a time; keep it that way, or put a
lock around this module.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol

from daemon.documents.decoding import FORMAT_NAMES, FORMATS, BadInputError, Page, fit_within
from daemon.documents.pdf import PdfPages, pdf_render_scale
from daemon.documents.raster import RasterPages
from daemon.settings import LimitsSettings

# The readers' shared names are part of this module's interface.
__all__ = [
    "FORMATS",
    "FORMAT_NAMES",
    "BadInputError",
    "Document",
    "Page",
    "fit_within",
    "open_document",
    "pdf_render_scale",
    "sniff_format",
]

_EXTENSIONS = {
    "png": "png",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "jpe": "jpeg",
    "jfif": "jpeg",
    "tif": "tiff",
    "tiff": "tiff",
    "webp": "webp",
    "bmp": "bmp",
    "dib": "bmp",
    "gif": "gif",
    "pdf": "pdf",
}
# Sizes of the BMP info headers that exist (core, v1..v5 and OS/2 variants).
_BMP_INFO_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


class _PageSource(Protocol):
    def pages(self, count: int) -> Iterator[Page]: ...

    def close(self) -> None: ...


class Document:
    """An opened input: its format, page counts, notes, and its pages on demand."""

    def __init__(
        self,
        *,
        format: str,
        page_count: int,
        max_pages: int,
        notes: tuple[str, ...],
        source: _PageSource,
    ) -> None:
        self.format = format
        self.page_count = page_count
        self.pages_to_process = min(page_count, max_pages)
        limit_note: tuple[str, ...] = ()
        if page_count > max_pages:
            limit_note = (
                f"page limit: {max_pages} of {page_count} pages processed (limits.max_pages)",
            )
        self.notes: tuple[str, ...] = notes + limit_note
        self._source = source
        self._closed = False

    def pages(self) -> Iterator[Page]:
        """Decode or render one page at a time, so that memory holds about one page."""
        if self._closed:
            raise RuntimeError("document is closed")
        return self._source.pages(self.pages_to_process)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._source.close()

    def __enter__(self) -> Document:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- format and size arithmetic ---------------------------------------------------


def sniff_format(data: bytes) -> str | None:
    """The format named by the content's magic bytes, or None when it is none of ours."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    # "BM" alone is common in text ("BMW ..."), so the info header size must fit too.
    if (
        data[:2] == b"BM"
        and len(data) >= 18
        and struct.unpack_from("<I", data, 14)[0] in _BMP_INFO_HEADER_SIZES
    ):
        return "bmp"
    # Readers accept a PDF header anywhere in the first kilobyte (after junk a
    # mail gateway or scanner prepended); pdfium does too.
    if b"%PDF-" in data[:1024]:
        return "pdf"
    return None


# --- opening -------------------------------------------------------------------------


def open_document(data: bytes, limits: LimitsSettings, *, name: str = "") -> Document:
    """Identify `data` by content and open it; pages are decoded later, one at a time.

    `name` (the file name) only improves messages and notes; it never picks the format.
    """
    if len(data) == 0:
        raise BadInputError("empty_file", "the file is empty (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise BadInputError(
            "too_large",
            f"the file has {len(data):,} bytes, more than limits.max_file_bytes "
            f"({limits.max_file_bytes:,})",
        )
    kind = sniff_format(data)
    claimed = _EXTENSIONS.get(name.rsplit(".", 1)[-1].lower()) if "." in name else None
    if kind is None:
        raise BadInputError("unsupported_format", _unsupported_message(data, name, claimed))
    notes: tuple[str, ...] = ()
    if claimed is not None and claimed != kind:
        notes = (
            f"the name says {FORMAT_NAMES[claimed]} but the content is "
            f"{FORMAT_NAMES[kind]}; read as {FORMAT_NAMES[kind]}",
        )
    if kind == "pdf":
        pdf = PdfPages(data, limits)
        return Document(
            format=kind,
            page_count=pdf.page_count,
            max_pages=limits.max_pages,
            notes=notes,
            source=pdf,
        )
    raster = RasterPages(data, kind, limits)
    return Document(
        format=kind,
        page_count=raster.page_count,
        max_pages=limits.max_pages,
        notes=notes + raster.notes,
        source=raster,
    )


def _unsupported_message(data: bytes, name: str, claimed: str | None) -> str:
    supported = ", ".join(FORMAT_NAMES[kind] for kind in FORMATS)
    start = data[:8].hex(" ")
    if claimed is not None:
        return (
            f"{name!r} is named like a {FORMAT_NAMES[claimed]} file, but its content is not "
            f"one (it starts with bytes {start}); supported formats: {supported}"
        )
    return f"the content is not a supported format ({supported}); it starts with bytes {start}"
