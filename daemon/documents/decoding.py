"""What the document readers share: the error they raise, the page they return,
and the guard that turns a decoder's failure into a clear BadInputError.

A decoder is a parser of untrusted bytes: whatever Pillow or pdfium raise on
hostile data means "the file is bad", never "our bug".
"""

from __future__ import annotations

import contextlib
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pypdfium2 as pdfium
from PIL import Image, ImageFile, UnidentifiedImageError

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

# What Pillow's plugins and pdfium raise on hostile data. A decoder is a parser of
# untrusted bytes, so each of these means "the file is bad", never "our bug".
# MemoryError is left out on purpose: a real out-of-memory must reach the worker.
DECODE_FAILURES: tuple[type[Exception], ...] = (
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

POINTS_PER_INCH = 72.0


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


@contextlib.contextmanager
def decoding(format: str, where: str, notes: list[str], page: int | None = None) -> Iterator[None]:
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
    except DECODE_FAILURES as error:
        reason = str(error) or type(error).__name__
        raise BadInputError(
            "corrupt", f"{where}: the {FORMAT_NAMES[format]} data is damaged ({reason})", page=page
        ) from error
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_allowed
