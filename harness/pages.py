"""Pages rendered from known text, in every format the daemon accepts.

Used by tests and benchmarks alike: OCR output is checked against the words
that were drawn. DejaVu fonts are on these machines; Pillow's built-in
scalable font is the fallback.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "DejaVuSans.ttf",
)

# Words that OCR engines read reliably at 12 pt and above; tests assert on them.
SAMPLE_LINES = (
    "Invoice number 48213 for the harbour office",
    "Delivered twelve boxes of copper wire today",
    "Please remit payment within thirty days",
)


def font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        try:
            return ImageFont.truetype(candidate, size_px)
        except OSError:
            continue
    return ImageFont.load_default(size=size_px)


def render_page(
    lines: Sequence[str] = SAMPLE_LINES,
    *,
    width: int = 1654,
    height: int = 2339,
    font_px: int = 40,
    margin: int = 120,
    line_gap: float = 1.8,
) -> Image.Image:
    """An RGB page (A4 at 200 DPI by default) with the lines drawn top to bottom."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    face = font(font_px)
    y = margin
    for line in lines:
        draw.text((margin, y), line, font=face, fill="black")
        y += int(font_px * line_gap)
    return page


def render_columns(
    left: Sequence[str],
    right: Sequence[str],
    *,
    width: int = 1654,
    height: int = 2339,
    font_px: int = 34,
    margin: int = 100,
) -> Image.Image:
    """A two-column page: a reader reads all of `left`, then all of `right`."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    face = font(font_px)
    column_x = (margin, width // 2 + margin // 2)
    for x, lines in zip(column_x, (left, right), strict=True):
        y = margin
        for line in lines:
            draw.text((x, y), line, font=face, fill="black")
            y += int(font_px * 1.8)
    return page


def save_png(image: Image.Image, path: Path) -> Path:
    image.save(path, format="PNG")
    return path


def save_palette_png(image: Image.Image, path: Path) -> Path:
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path, format="PNG")
    return path


def save_bilevel_tiff(image: Image.Image, path: Path) -> Path:
    image.convert("1").save(path, format="TIFF", compression="group4")
    return path


def save_multipage_tiff(images: Sequence[Image.Image], path: Path) -> Path:
    first, *rest = images
    first.save(path, format="TIFF", save_all=True, append_images=list(rest), compression="tiff_lzw")
    return path


def save_jpeg_with_orientation(image: Image.Image, path: Path, orientation: int) -> Path:
    """Save the page so that a viewer honouring EXIF `orientation` shows it upright.

    The pixels are stored turned the other way, as a camera held sideways does.
    """
    inverse = {
        1: None,
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,  # viewer turns 90 clockwise to show it
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = image.transpose(inverse) if inverse is not None else image
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format="JPEG", quality=90, exif=exif.tobytes())
    return path


def save_pdf(images: Sequence[Image.Image], path: Path, dpi: int = 200) -> Path:
    """An image-only PDF, as a scanner makes: one page per image at `dpi`."""
    first, *rest = images
    first.save(path, format="PDF", save_all=True, append_images=list(rest), resolution=dpi)
    return path


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_titled_columns(
    title: str,
    left: Sequence[str],
    right: Sequence[str],
    *,
    width: int = 1654,
    height: int = 2339,
    title_px: int = 48,
    font_px: int = 34,
    margin: int = 100,
) -> Image.Image:
    """A full-width title above two columns: read the title, all of `left`, then all of `right`."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    title_face = font(title_px)
    title_width = draw.textlength(title, font=title_face)
    draw.text(((width - title_width) / 2, margin), title, font=title_face, fill="black")
    face = font(font_px)
    top = margin + int(title_px * 3)
    column_x = (margin, width // 2 + margin // 2)
    for x, lines in zip(column_x, (left, right), strict=True):
        y = top
        for line in lines:
            draw.text((x, y), line, font=face, fill="black")
            y += int(font_px * 1.8)
    return page


@dataclass(frozen=True)
class DrawnWord:
    """A word as drawn: its text and its box (x0, y0, x1, y1) in page pixels."""

    text: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class DrawnLine:
    text: str
    words: tuple[DrawnWord, ...]

    @property
    def box(self) -> tuple[int, int, int, int]:
        boxes = [word.box for word in self.words]
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )


def render_known_words(
    lines: Sequence[str],
    *,
    width: int = 1654,
    height: int = 2339,
    font_px: int = 40,
    margin: int = 120,
    line_gap: float = 1.8,
) -> tuple[Image.Image, list[DrawnLine]]:
    """A page with `lines` drawn word by word, and where each word landed.

    A line with spaces is split into words at them; a line without (Chinese,
    Japanese) into characters, drawn without gaps, as an engine reports them.
    """
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    face = font(font_px)
    space = draw.textlength(" ", font=face)
    drawn: list[DrawnLine] = []
    y = margin
    for line in lines:
        spaced = " " in line
        pieces = line.split(" ") if spaced else list(line)
        x = float(margin)
        placed = []
        for piece in pieces:
            x0, y0, x1, y1 = draw.textbbox((x, y), piece, font=face)
            draw.text((x, y), piece, font=face, fill="black")
            placed.append(DrawnWord(piece, (round(x0), round(y0), round(x1), round(y1))))
            x = x1 + (space if spaced else 0)
        drawn.append(DrawnLine(line, tuple(placed)))
        y += int(font_px * line_gap)
    return page, drawn


def words(text: str) -> set[str]:
    """The distinct lower-case words (letters and digits) of a text."""
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def recall(expected: Sequence[str], text: str) -> float:
    """The share of the distinct words of the `expected` lines found anywhere in `text`."""
    wanted = words(" ".join(expected))
    return len(wanted & words(text)) / len(wanted)
