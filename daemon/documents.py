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

import contextlib
import io
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, cast

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageFile, UnidentifiedImageError

from daemon.settings import LimitsSettings

FORMATS = ("png", "jpeg", "tiff", "webp", "bmp", "gif", "pdf")
FORMAT_NAMES = {
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "webp": "WebP",
    "bmp": "BMP",
    "gif": "GIF",
    "pdf": "PDF",
}
_PILLOW_PLUGINS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "webp": "WEBP",
    "bmp": "BMP",
    "gif": "GIF",
}
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

# What Pillow's plugins and pdfium raise on hostile data. A decoder is a parser of
# untrusted bytes, so each of these means "the file is bad", never "our bug".
# MemoryError is left out on purpose: a real out-of-memory must reach the worker.
_DECODE_FAILURES: tuple[type[Exception], ...] = (
    OSError,  # includes PIL.UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # Pillow's "not a PNG file", "broken PNG file"
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    ZeroDivisionError,
    OverflowError,
    pdfium.PdfiumError,
)

# ImageOps.exif_transpose's table; applied by hand because the orientation must
# be read from the source frame, and the transpose done on the (smaller) result.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
# The IEND chunk type and its CRC, a constant: the last 8 bytes of every complete PNG.
_PNG_END_CHUNK = b"IEND\xaeB`\x82"
_POINTS_PER_INCH = 72.0


class BadInputError(Exception):
    """The input cannot be turned into pages; `code` says why for machines, `message` for people.

    `page` is the 0-based index of the page that failed, when one page is to blame.
    """

    def __init__(self, code: str, message: str, *, page: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.page = page


@dataclass(frozen=True)
class Page:
    index: int  # 0-based page number in the document
    image: Image.Image  # always mode "RGB"
    scale: float  # 1.0, or < 1 when downscaled to fit limits.max_page_pixels
    notes: tuple[str, ...] = ()


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


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most `max_pixels` pixels."""
    if width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    new_width = max(1, math.floor(width * factor))
    new_height = max(1, math.floor(height * factor))
    # Only a side clamped to one pixel can push the product over the limit.
    if new_width * new_height > max_pixels:
        if new_height == 1:
            new_width = max_pixels
        else:
            new_height = max_pixels
    return new_width, new_height


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

    scale = dpi / _POINTS_PER_INCH
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
        pdf = _PdfPages(data, limits)
        return Document(
            format=kind,
            page_count=pdf.page_count,
            max_pages=limits.max_pages,
            notes=notes,
            source=pdf,
        )
    raster = _RasterPages(data, kind, limits)
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


@contextlib.contextmanager
def _decoding(format: str, where: str, notes: list[str], page: int | None = None) -> Iterator[None]:
    """Turn decoder failures into BadInputError (blaming `page`), decoder warnings into notes."""
    # Another library in the process may have switched this on; truncated data
    # must fail here, not come out as half a page that the OCR reads as complete.
    truncated_allowed = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Our own hard limit is the one that counts; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
        notes.extend(f"decoder warning: {warning.message}" for warning in caught)
    except BadInputError as error:
        if error.page is None:
            error.page = page
        raise
    except Image.DecompressionBombError as error:
        raise BadInputError(
            "page_too_large",
            f"{where}: refused by Pillow's decompression-bomb guard ({error})",
            page=page,
        ) from error
    except UnidentifiedImageError as error:
        # Pillow's own text names a BytesIO object; the cause is the header.
        raise BadInputError(
            "corrupt",
            f"{where}: the {FORMAT_NAMES[format]} header is damaged or incomplete, "
            "so the image cannot be identified",
            page=page,
        ) from error
    except _DECODE_FAILURES as error:
        reason = str(error) or type(error).__name__
        raise BadInputError(
            "corrupt", f"{where}: the {FORMAT_NAMES[format]} data is damaged ({reason})", page=page
        ) from error
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_allowed


def _hard_pixel_limit(limits: LimitsSettings) -> int:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is None:
        return limits.hard_max_page_pixels
    # Pillow refuses above twice MAX_IMAGE_PIXELS; saying so here gives one clear message.
    return min(limits.hard_max_page_pixels, 2 * int(pillow_limit))


# --- raster images -------------------------------------------------------------------


class _RasterPages:
    """Pillow-decoded pages. Each pages() call opens its own Pillow image from the bytes."""

    def __init__(self, data: bytes, format: str, limits: LimitsSettings) -> None:
        if format == "png" and data.rfind(_PNG_END_CHUNK) < 0:
            # Pillow stops reading once the pixels are in, so a PNG cut off inside
            # its last checksums still decodes; the missing end chunk gives it away.
            raise BadInputError(
                "corrupt", "the PNG ends before its IEND chunk: the file is truncated"
            )
        self._data = data
        self.format = format
        self._limits = limits
        opening_notes: list[str] = []
        with _decoding(format, "opening the image", opening_notes), self._open() as image:
            frames = getattr(image, "n_frames", 1)
            self._check_size(image.size, 0)
        self.notes: tuple[str, ...] = tuple(opening_notes)
        if format == "tiff":
            self.page_count = frames
        else:
            self.page_count = 1
            if frames > 1:
                self.notes += (
                    f"animated {FORMAT_NAMES[format]}: only the first of {frames} frames is read",
                )

    def _open(self) -> ImageFile.ImageFile:
        return Image.open(io.BytesIO(self._data), formats=[_PILLOW_PLUGINS[self.format]])

    def _check_size(self, size: tuple[int, int], index: int) -> None:
        width, height = size
        if width <= 0 or height <= 0:
            raise BadInputError(
                "corrupt", f"page {index + 1} has no pixels ({width}x{height})", page=index
            )
        limit = _hard_pixel_limit(self._limits)
        if width * height > limit:
            raise BadInputError(
                "page_too_large",
                f"page {index + 1} is {width}x{height} = {width * height:,} pixels, more than "
                f"limits.hard_max_page_pixels ({limit:,}); refused before decoding",
                page=index,
            )

    def pages(self, count: int) -> Iterator[Page]:
        notes: list[str] = []
        with _decoding(self.format, "opening the image", notes):
            image = self._open()
        try:
            for index in range(count):
                yield self._page(image, index)
        finally:
            image.close()

    def _page(self, image: ImageFile.ImageFile, index: int) -> Page:
        notes: list[str] = []
        with _decoding(self.format, f"page {index + 1}", notes, page=index):
            if image.tell() != index:
                image.seek(index)  # TIFF only: every other format has one page
            original = image.size
            self._check_size(original, index)
            target = fit_within(*original, self._limits.max_page_pixels)
            if target != original and self.format == "jpeg":
                # libjpeg scales by 1/2, 1/4 or 1/8 while decoding, to at least `target`.
                image.draft(image.mode, target)
                if image.size != original:
                    reduction = round(original[0] / image.size[0])
                    notes.append(f"JPEG decoded at 1/{reduction} scale")
            image.load()
            orientation = _orientation(image)
            pixels = _to_gray_or_rgb(image)
            if pixels.size != target:
                pixels = pixels.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            method = _ORIENTATION_TRANSPOSE.get(orientation)
            if method is not None:
                pixels = pixels.transpose(method)
            if pixels.mode != "RGB":
                pixels = pixels.convert("RGB")
            elif pixels is image:
                # The page must outlive the decoder's image, which is closed (or
                # re-filled by the next TIFF page) once iteration moves on.
                pixels = image.copy()
        scale = 1.0
        if target != original:
            scale = min(target[0] / original[0], target[1] / original[1])
            notes.append(
                f"downscaled from {original[0]}x{original[1]} to {target[0]}x{target[1]} "
                f"to fit limits.max_page_pixels ({self._limits.max_page_pixels:,})"
            )
        return Page(index=index, image=pixels, scale=scale, notes=tuple(notes))

    def close(self) -> None:
        self._data = b""


def _orientation(image: Image.Image) -> int:
    """The EXIF/TIFF/XMP orientation; 1 (as stored) when absent or unreadable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_FAILURES:
        return 1  # a broken EXIF block must not cost the page its text
    return value if isinstance(value, int) else 1


def _to_gray_or_rgb(image: Image.Image) -> Image.Image:
    """Mode L or RGB, whatever came in; L stays L so that resizing stays cheap."""
    mode = image.mode
    if "transparency" in image.info and mode in ("L", "P", "RGB"):
        return _flatten_on_white(image.convert("RGBA"))
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16"):
        # Pillow's I;16 -> L conversion clips at 255, turning the page white.
        return image.convert("I").point(lambda value: value / 257 + 0.5).convert("L")
    if mode in ("I", "F"):
        return _stretch_to_8_bit(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _flatten_on_white(image.convert("RGBA"))
    try:
        return image.convert("RGB")  # P, CMYK (Adobe inversion is the decoder's job), YCbCr, LAB
    except ValueError as error:
        raise BadInputError(
            "unsupported_format", f"pixel mode {mode!r} has no conversion to RGB"
        ) from error


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    page = Image.new("RGB", rgba.size, "white")
    page.paste(rgba, mask=rgba.getchannel("A"))
    return page


def _stretch_to_8_bit(image: Image.Image) -> Image.Image:
    """32-bit int or float pixels to L, by the range their values actually use."""
    low, high = cast(tuple[float, float], image.getextrema())  # one band: (min, max)
    if not (math.isfinite(low) and math.isfinite(high)):
        return image.convert("L")
    if image.mode == "F" and low >= 0 and high <= 1:
        factor, offset = 255.0, 0.0
    elif low >= 0 and high <= 255:
        return image.convert("L")
    elif low >= 0 and high <= 65535:
        factor, offset = 1 / 257, 0.5  # 16-bit data that a decoder widened to 32 bits
    else:
        factor = 255 / (high - low)
        offset = -low * factor + 0.5
    return image.point(lambda value: value * factor + offset).convert("L")


# --- PDF ------------------------------------------------------------------------------

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


class _PdfPages:
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
        with _decoding("pdf", where, [], page=index):
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
        full_scale = dpi / _POINTS_PER_INCH
        notes: tuple[str, ...] = ()
        if scale < full_scale:
            full = (math.ceil(width_pt * full_scale), math.ceil(height_pt * full_scale))
            notes = (
                f"rendered at {scale * _POINTS_PER_INCH:.1f} DPI instead of {dpi} "
                f"({image.width}x{image.height} instead of {full[0]}x{full[1]}) "
                f"to fit limits.max_page_pixels ({max_pixels:,})",
            )
        return Page(index=index, image=image, scale=min(1.0, scale / full_scale), notes=notes)

    def close(self) -> None:
        self._pdf.close()
        self._data = b""
