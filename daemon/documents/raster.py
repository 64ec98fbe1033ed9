"""Raster inputs (PNG, JPEG, TIFF, WebP, BMP, GIF) decoded by Pillow into RGB pages.

A page is refused from its header when it has too many pixels, before a
single pixel is decoded; JPEGs are reduced by the decoder; every pixel mode is
normalised to RGB and the EXIF orientation applied.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import cast

from PIL import Image, ImageFile

from daemon.documents.decoding import (
    DECODE_FAILURES,
    FORMAT_NAMES,
    BadInputError,
    Page,
    decoding,
    fit_within,
)
from daemon.settings import LimitsSettings

_PILLOW_PLUGINS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "webp": "WEBP",
    "bmp": "BMP",
    "gif": "GIF",
}

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


def _hard_pixel_limit(limits: LimitsSettings) -> int:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is None:
        return limits.hard_max_page_pixels
    # Pillow refuses above twice MAX_IMAGE_PIXELS; saying so here gives one clear message.
    return min(limits.hard_max_page_pixels, 2 * int(pillow_limit))


# --- raster images -------------------------------------------------------------------


class RasterPages:
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
        with decoding(format, "opening the image", opening_notes), self._open() as image:
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
        with decoding(self.format, "opening the image", notes):
            image = self._open()
        try:
            for index in range(count):
                yield self._page(image, index)
        finally:
            image.close()

    def _page(self, image: ImageFile.ImageFile, index: int) -> Page:
        notes: list[str] = []
        with decoding(self.format, f"page {index + 1}", notes, page=index):
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
    except DECODE_FAILURES:
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
