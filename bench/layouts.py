"""Multi-column pages with known text: what a reader reads, in the order a reader reads it.

A page is a stack of regions drawn top to bottom on A4 at 200 DPI: running
headers and footers, a full-width title, blocks of two or three columns (of
paragraphs: short last lines, a gap between paragraphs), a full-width figure
(a bar chart without text) or a ruled table between column blocks. Each page
comes with its reference text in reading order (header, title, each column
of a block from left to right, the table row by row, footer) and with the
lines of every column, so tests can check the order of words inside each
column.

Used by the tesseract benchmark part (bench/versus_tesseract.py) and by the
reading-order tests (tests/worker/), which render them on the spot.
"""

from __future__ import annotations

import difflib
import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageDraw

from bench import pageset
from harness import pages

A4 = pageset.A4
MARGIN = 120
PT10_PX = 28  # 10 pt at 200 DPI
PT8_PX = pageset.PT8_PX
LINE_PITCH = 1.45  # baseline to baseline, in font sizes
PARAGRAPH_GAP = 0.8  # extra space between paragraphs, in font sizes


@dataclass(frozen=True)
class Columns:
    """A block of `count` columns, each `lines` lines of prose in paragraphs."""

    count: int
    lines: int
    font_px: int = PT10_PX
    gutter_px: int = 60


@dataclass(frozen=True)
class Title:
    text: str
    font_px: int = 52


@dataclass(frozen=True)
class Figure:
    """A full-width bar chart without text, `height_px` tall."""

    height_px: int = 360


@dataclass(frozen=True)
class Table:
    """A full-width ruled table of `rows` rows (header included) and four columns."""

    rows: int = 4
    font_px: int = PT10_PX


Region = Columns | Title | Figure | Table


@dataclass(frozen=True)
class Design:
    """What a page holds: its regions top to bottom, and running header and footer."""

    regions: tuple[Region, ...]
    header: tuple[str, str] | None = None  # left and right text, small type
    footer: tuple[str, str] | None = None


@dataclass(frozen=True)
class Page:
    """A rendered page, its text in reading order, and each column's lines."""

    image: Image.Image
    text: str  # blocks in reading order, separated by a blank line
    columns: tuple[tuple[str, ...], ...]  # every column of every block, in reading order
    blocks: tuple[str, ...] = field(default=())  # every text unit a reader reads, in order


def render(design: Design, seed: int, size: tuple[int, int] = A4) -> Page:
    """Draw `design` on a page of `size` with prose seeded by `seed`."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    rng = random.Random(seed)
    blocks: list[str] = []
    columns: list[tuple[str, ...]] = []
    top = MARGIN
    if design.header is not None:
        _draw_pair(draw, design.header, top, width)
        blocks.append("\n".join(part for part in design.header if part))
        top += int(pageset.PT8_PX * 3.5)
    footer_top = height - MARGIN - pageset.PT8_PX
    for region in design.regions:
        if isinstance(region, Title):
            face = pages.font(region.font_px)
            title_width = draw.textlength(region.text, font=face)
            draw.text(((width - title_width) / 2, top), region.text, font=face, fill="black")
            blocks.append(region.text)
            top += int(region.font_px * 2.2)
        elif isinstance(region, Columns):
            block, bottom = _draw_columns(draw, region, top, width, rng)
            columns.extend(block)
            blocks.extend("\n".join(column) for column in block)
            top = bottom + int(region.font_px * 1.6)
        elif isinstance(region, Figure):
            _draw_chart(draw, MARGIN, top, width - MARGIN, top + region.height_px, rng)
            top += region.height_px + int(PT10_PX * 1.6)
        else:
            rows, bottom = _draw_table(draw, region, top, width, rng)
            blocks.append("\n".join(rows))
            top = bottom + int(region.font_px * 1.6)
    if top > footer_top:
        raise ValueError(f"the design needs {top} px of height; the page has {footer_top}")
    if design.footer is not None:
        _draw_pair(draw, design.footer, footer_top, width)
        blocks.append("\n".join(part for part in design.footer if part))
    return Page(image, "\n\n".join(blocks), tuple(columns), tuple(blocks))


def _draw_pair(draw: ImageDraw.ImageDraw, pair: tuple[str, str], y: int, width: int) -> None:
    face = pages.font(pageset.PT8_PX)
    left, right = pair
    draw.text((MARGIN, y), left, font=face, fill="black")
    draw.text(
        (width - MARGIN - draw.textlength(right, font=face), y), right, font=face, fill="black"
    )


def _draw_columns(
    draw: ImageDraw.ImageDraw, region: Columns, top: int, width: int, rng: random.Random
) -> tuple[list[tuple[str, ...]], int]:
    """Draw the block; its columns' lines and the lowest baseline's bottom."""
    face = pages.font(region.font_px)
    text_width = width - 2 * MARGIN
    column_width = (text_width - (region.count - 1) * region.gutter_px) // region.count
    pitch = int(region.font_px * LINE_PITCH)
    paragraph_gap = int(region.font_px * PARAGRAPH_GAP)
    block: list[tuple[str, ...]] = []
    bottom = top
    for column in range(region.count):
        x = MARGIN + column * (column_width + region.gutter_px)
        lines = pageset.prose_lines(
            rng.randrange(1 << 30), region.lines, region.font_px, column_width
        )
        # Paragraphs of 5 to 9 lines; the last line of each is short.
        y = top
        until_break = rng.randint(5, 9)
        drawn: list[str] = []
        for index, line in enumerate(lines):
            until_break -= 1
            last = until_break == 0 and index < len(lines) - 1
            if last:
                words = line.split()
                line = " ".join(words[: max(1, len(words) // 3)])
            draw.text((x, y), line, font=face, fill="black")
            drawn.append(line)
            y += pitch
            if last:
                y += paragraph_gap
                until_break = rng.randint(5, 9)
        bottom = max(bottom, y)
        block.append(tuple(drawn))
    return block, bottom


def _draw_chart(
    draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, rng: random.Random
) -> None:
    """Axes, a grid and filled bars: ink that is not text."""
    draw.rectangle((x0, y0, x1, y1), outline="black", width=3)
    for k in range(1, 5):
        y = y0 + (y1 - y0) * k // 5
        draw.line((x0, y, x1, y), fill=(170, 170, 170), width=2)
    bars = 12
    slot = (x1 - x0) // bars
    for k in range(bars):
        bar_top = rng.randint(y0 + 20, y1 - 40)
        left = x0 + k * slot + slot // 4
        draw.rectangle((left, bar_top, left + slot // 2, y1 - 3), fill=(60, 60, 60))


def _draw_table(
    draw: ImageDraw.ImageDraw, region: Table, top: int, width: int, rng: random.Random
) -> tuple[list[str], int]:
    face = pages.font(region.font_px)
    edges = [MARGIN, *(MARGIN + (width - 2 * MARGIN) * k // 8 for k in (4, 5, 6)), width - MARGIN]
    row_height = int(region.font_px * 2.0)
    body = [("Item", "Quantity", "Unit price", "Total")]
    for _ in range(region.rows - 1):
        item = " ".join(rng.choice(pageset._WORDS) for _ in range(2)).capitalize()
        quantity = rng.randint(1, 250)
        unit = rng.randint(50, 99999) / 100
        body.append((item, str(quantity), f"{unit:,.2f}", f"{quantity * unit:,.2f}"))
    for index, cells in enumerate(body):
        y = top + index * row_height
        for column, cell in enumerate(cells):
            draw.text((edges[column] + 12, y + 10), cell, font=face, fill="black")
    bottom = top + len(body) * row_height
    for index in range(len(body) + 1):
        y = top + index * row_height
        draw.line((edges[0], y, edges[-1], y), fill="black", width=2)
    for x in edges:
        draw.line((x, top, x, bottom), fill="black", width=2)
    return [" ".join(cells) for cells in body], bottom


HEADER = ("Field Service Manual", "Chapter 4: Timing")
FOOTER = ("Revision C", "Page 17")

# The layouts the benchmark and the tests render, by name.
DESIGNS: dict[str, Design] = {
    "two columns": Design((Columns(2, 40),)),
    "three columns": Design((Columns(3, 40, font_px=PT8_PX + 2, gutter_px=50),)),
    "title over two columns": Design((Title("Timing and Ignition Service Notes"), Columns(2, 36))),
    "figure between column blocks": Design((Columns(2, 14), Figure(), Columns(2, 14))),
    "table between column blocks": Design((Columns(2, 15), Table(5), Columns(2, 14))),
    "header, footer, two columns": Design((Columns(2, 38),), header=HEADER, footer=FOOTER),
    "narrow gutter": Design((Columns(2, 40, gutter_px=24),)),
    "dense two columns, 8 pt": Design((Columns(2, 56, font_px=PT8_PX, gutter_px=44),)),
}


def page(name: str, seed: int = 1, size: tuple[int, int] = A4) -> Page:
    return render(DESIGNS[name], seed, size)


def column_order_faults(columns: Sequence[Sequence[str]], text: str) -> list[str]:
    """What breaks each column's word order in `text`: empty when every column reads in order.

    For each column, its words are matched in order against the words of
    `text` (a longest common subsequence); a fault is a column with fewer than
    95% of its words matched in order, or with words of another column
    interleaved among its matches.
    """
    said = [word.strip(".,;:").lower() for word in text.split()]
    said = [word for word in said if word]
    faults: list[str] = []
    for number, column in enumerate(columns, start=1):
        wanted = [word.strip(".,;:").lower() for line in column for word in line.split()]
        wanted = [word for word in wanted if word]
        matcher = difflib.SequenceMatcher(None, wanted, said, autojunk=False)
        matched = [(b, size) for _, b, size in matcher.get_matching_blocks() if size]
        found = sum(size for _, size in matched)
        if found < 0.95 * len(wanted):
            faults.append(f"column {number}: {found} of {len(wanted)} words in order")
            continue
        first, last = matched[0][0], matched[-1][0] + matched[-1][1]
        stray = (last - first) - found
        if stray > max(2, 0.03 * len(wanted)):
            faults.append(f"column {number}: {stray} other words among its {found}")
    return faults


# The scans the benchmark adds: the plain two-column page fed crooked or sideways.
SCANS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "two columns, skewed 2 degrees": lambda image: pageset.skewed(image, 2.0),
    "two columns, skewed 4 degrees": lambda image: pageset.skewed(image, -4.0),
    "two columns, turned 90 degrees": lambda image: pageset.turned(image, 90),
    "table between column blocks, scanned, skewed 3 degrees": lambda image: scanned(
        pageset.skewed(image, 3.0)
    ),
}
KINDS = (*DESIGNS, *SCANS)


def scanned(image: Image.Image) -> Image.Image:
    """The page as a cheap office scanner sends it (pageset.scan_like: blur, noise, JPEG q25)."""
    return Image.open(io.BytesIO(pageset.scan_like(image, seed=18))).convert("RGB")


def quick(design: Design) -> Design:
    """The design with a few lines per column: checks the harness on a small page."""
    regions: list[Region] = []
    for region in design.regions:
        if isinstance(region, Columns):
            regions.append(replace(region, lines=3))
        elif isinstance(region, Figure):
            regions.append(Figure(120))
        elif isinstance(region, Table):
            regions.append(replace(region, rows=2))
        else:
            regions.append(region)
    return replace(design, regions=tuple(regions))


def build(
    folder: Path, *, quick_run: bool = False, kinds: Sequence[str] = KINDS
) -> list[pageset.Sample]:
    """Write one PNG per layout of `kinds` into `folder`; one Sample each, in KINDS order."""
    folder.mkdir(parents=True, exist_ok=True)
    size = (A4[0], 1100) if quick_run else A4
    samples = []
    for number, kind in enumerate(KINDS, start=1):
        if kind not in kinds:
            continue
        design = DESIGNS[kind.split(",")[0]] if kind in SCANS else DESIGNS[kind]
        page = render(quick(design) if quick_run else design, seed=number, size=size)
        image = SCANS[kind](page.image) if kind in SCANS else page.image
        stem = "".join(c if c.isalnum() else "-" for c in kind).strip("-")
        path = folder / f"layout-{number:02d}-{stem}.png"
        image.save(path, format="PNG", dpi=(pageset.DPI, pageset.DPI))
        samples.append(pageset.Sample(kind, path, page.text, 1))
    return samples
