"""Generated pages with known text, one set per kind of page a scanner inbox receives.

Pages are A4 at 200 DPI (1654 x 2339 px), where 12 pt type is about 33 px
and 8 pt about 22 px. The text is seeded pseudo-prose (words, numbers,
amounts, dates, punctuation), different on every page, so no engine profits
from repetition. Each sample is written as the file a user would drop (PNG,
a JPEG for the scan-like page, a PDF for the multi-page document) and carries
the text a reader would read, in reading order.

Built on tests/support/pages.py (fonts, PNG and PDF writers, columns).
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from harness import pages

A4 = (1654, 2339)
QUICK_PAGE = (1240, 760)  # a third of A4's area: for runs that only check the harness
DPI = 200
PT12_PX = 33  # 12 pt at 200 DPI: 12 / 72 * 200
PT8_PX = 22  # 8 pt at 200 DPI
MARGIN = 130

_WORD_LIST = (
    "the of and to in for is on that by this with you it not or be are from at as your all "
    "have new more an was we will home can us about if page my has search free but our one "
    "other do no information time they site he up may what which their news out use any "
    "there see only so his when contact here business who web also now help get view online "
    "first been would how were me services some these click its like service than find price "
    "date back top people had list name just over state year day into email two health world "
    "next used go work last most products music buy data make them should product system post "
    "her city add policy number such please available copyright support message after best "
    "software then jan good video well where info rights public books high school through each "
    "links she review years order very privacy book items company read group need many user "
    "said does set under general research university january mail full map reviews program "
    "life know games way days management part could great united hotel real item international "
    "center must store travel comments made development report off member details line terms "
    "before hotels did send right type because local those using results office education "
    "national car design take posted internet address community within states area want phone "
    "shipping reserved subject between forum family long based code show even black check "
    "special prices website index being women much sign file link open today technology south "
    "case project same pages version section own found sports house related security both "
    "county american photo game members power while care network down computer systems three "
    "total place following download without access think north resources current posts big "
    "media law control water history pictures size personal since including guide shop "
    "directory board location change white text small rating rate government children during "
    "invoice harbour copper delivery payment remit account balance receipt customer supplier"
)
_WORDS = _WORD_LIST.split()
_NAME_LIST = (
    "Amsterdam Berlin Lisbon Oslo Vienna Dublin Madrid Prague Warsaw Zurich Martin Sophie "
    "Oliver Claire Henrik Agnes Tomas Ingrid Pablo Lucia"
)
_NAMES = _NAME_LIST.split()


def prose_lines(
    seed: int, count: int, font_px: int, width_px: int, *, max_chars: int | None = None
) -> list[str]:
    """`count` lines of seeded pseudo-prose, each as wide as fits in `width_px` at `font_px`."""
    rng = random.Random(seed)
    face = pages.font(font_px)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    sentence_start = True
    for _ in range(count):
        line = ""
        while True:
            word = _token(rng)
            if sentence_start:
                word = word[:1].upper() + word[1:]
                sentence_start = False
            if rng.random() < 0.12:
                word += rng.choice((".", ".", ",", ",", ";", ":"))
                sentence_start = word.endswith(".")
            candidate = f"{line} {word}" if line else word
            too_long = max_chars is not None and len(candidate) > max_chars
            if line and (measure.textlength(candidate, font=face) > width_px or too_long):
                break
            line = candidate
        lines.append(line)
    return lines


def _token(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.06:
        return str(rng.randint(2, 99999))
    if roll < 0.09:
        return f"{rng.randint(1, 9999):,}.{rng.randint(0, 99):02d}"
    if roll < 0.11:
        return f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1990, 2030)}"
    if roll < 0.15:
        return rng.choice(_NAMES)
    return rng.choice(_WORDS)


@dataclass(frozen=True)
class Sample:
    """One input file and the text a reader reads from it (pages joined by a blank line)."""

    kind: str
    path: Path
    text: str
    pages: int


def _text_page(
    lines: Sequence[str], *, font_px: int, line_gap: float = 1.6, size: tuple[int, int] = A4
) -> Image.Image:
    return pages.render_page(
        lines,
        width=size[0],
        height=size[1],
        font_px=font_px,
        margin=MARGIN,
        line_gap=line_gap,
    )


def _save_png(image: Image.Image, path: Path) -> Path:
    image.save(path, format="PNG", dpi=(DPI, DPI))
    return path


def scan_like(image: Image.Image, seed: int) -> bytes:
    """A page as a cheap office scanner sends it: grey paper, blur, noise, specks, JPEG q=25."""
    rng = np.random.default_rng(seed)
    grey = np.asarray(image.convert("L").filter(ImageFilter.GaussianBlur(1.3)), dtype=np.float32)
    # Paper at ~225, ink at ~50: a scan never has pure black on pure white.
    grey = 50 + grey * (175 / 255)
    grey += rng.normal(0, 18, grey.shape)
    specks = rng.random(grey.shape) < 0.0008
    grey[specks] = 60
    noisy = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=25, dpi=(DPI, DPI))
    return buffer.getvalue()


def skewed(image: Image.Image, degrees: float) -> Image.Image:
    """The page turned a little counter-clockwise, as a sheet fed crooked into a scanner."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")


def turned(image: Image.Image, clockwise: int) -> Image.Image:
    """The page scanned sideways (90) or upside down (180): PIL turns counter-clockwise."""
    return image.rotate(-clockwise, expand=True)


def table_page(seed: int, rows: int, size: tuple[int, int] = A4) -> tuple[Image.Image, str]:
    """A ruled table (item, quantity, unit price, total) and its text row by row."""
    rng = random.Random(seed)
    width, height = size
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    face = pages.font(PT12_PX)
    columns = (MARGIN, *(round(x * width / A4[0]) for x in (760, 1000, 1260)), width - MARGIN)
    row_height = int(PT12_PX * 2.2)
    header = ("Item", "Quantity", "Unit price", "Total")
    body: list[tuple[str, ...]] = [header]
    for _ in range(rows):
        item = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 3))).capitalize()
        quantity = rng.randint(1, 250)
        unit = rng.randint(50, 99999) / 100
        body.append((item, str(quantity), f"{unit:,.2f}", f"{quantity * unit:,.2f}"))
    top = MARGIN
    for index, cells in enumerate(body):
        y = top + index * row_height
        for column, cell in enumerate(cells):
            draw.text((columns[column] + 14, y + 14), cell, font=face, fill="black")
    bottom = top + len(body) * row_height
    for index in range(len(body) + 1):
        y = top + index * row_height
        draw.line((columns[0], y, columns[-1], y), fill="black", width=2)
    for x in columns:
        draw.line((x, top, x, bottom), fill="black", width=2)
    return page, "\n".join(" ".join(cells) for cells in body)


@dataclass(frozen=True)
class Sizes:
    """How much text each page carries: the benchmark's time budget is set here."""

    lines_12pt: int = 22
    lines_8pt: int = 34
    column_lines: int = 20
    table_rows: int = 14
    pdf_pages: int = 3
    page: tuple[int, int] = A4

    @classmethod
    def quick(cls) -> Sizes:
        """A few lines on pages a third of A4's area: checks the harness in seconds."""
        return cls(
            lines_12pt=3, lines_8pt=3, column_lines=3, table_rows=2, pdf_pages=2, page=QUICK_PAGE
        )


KINDS = (
    "clean 12 pt",
    "small 8 pt",
    "noisy scan (blur, noise, JPEG q25)",
    "skewed 3 degrees",
    "rotated 90 degrees",
    "rotated 180 degrees",
    "two columns",
    "table",
    "multi-page PDF",
)


def build(folder: Path, sizes: Sizes = Sizes(), kinds: Sequence[str] = KINDS) -> list[Sample]:
    """Write the page set into `folder`; one Sample per kind, in KINDS order."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = sizes.page
    text_width = width - 2 * MARGIN
    samples: list[Sample] = []

    def prose(seed: int, count: int, font_px: int = PT12_PX) -> list[str]:
        return prose_lines(seed, count, font_px, text_width)

    def text_page(lines: Sequence[str], font_px: int = PT12_PX) -> Image.Image:
        return _text_page(lines, font_px=font_px, size=sizes.page)

    for number, kind in enumerate(KINDS, start=1):
        if kind not in kinds:
            continue
        stem = folder / f"{number:02d}-{kind.split(' (')[0].replace(' ', '-')}"
        if kind == "clean 12 pt":
            lines = prose(101, sizes.lines_12pt)
            path = _save_png(text_page(lines), stem.with_suffix(".png"))
        elif kind == "small 8 pt":
            lines = prose_lines(102, sizes.lines_8pt, PT8_PX, text_width)
            path = _save_png(text_page(lines, PT8_PX), stem.with_suffix(".png"))
        elif kind.startswith("noisy"):
            lines = prose(103, sizes.lines_12pt)
            path = stem.with_suffix(".jpg")
            path.write_bytes(scan_like(text_page(lines), seed=103))
        elif kind == "skewed 3 degrees":
            lines = prose(104, sizes.lines_12pt)
            page = skewed(text_page(lines), 3.0)
            path = _save_png(page, stem.with_suffix(".png"))
        elif kind.startswith("rotated"):
            clockwise = 90 if "90" in kind else 180
            lines = prose(105 if clockwise == 90 else 106, sizes.lines_12pt)
            page = turned(text_page(lines), clockwise)
            path = _save_png(page, stem.with_suffix(".png"))
        elif kind == "two columns":
            # render_columns starts the right column at width/2 + margin/2.
            column_width = width // 2 - MARGIN // 2 - MARGIN - 40
            left = prose_lines(107, sizes.column_lines, PT12_PX, column_width)
            right = prose_lines(108, sizes.column_lines, PT12_PX, column_width)
            page = pages.render_columns(
                left, right, width=width, height=height, font_px=PT12_PX, margin=MARGIN
            )
            lines = [*left, *right]
            path = _save_png(page, stem.with_suffix(".png"))
        elif kind == "table":
            page, text = table_page(109, sizes.table_rows, sizes.page)
            path = _save_png(page, stem.with_suffix(".png"))
            samples.append(Sample(kind, path, text, 1))
            continue
        else:  # multi-page PDF
            texts = [prose(110 + index, sizes.lines_12pt) for index in range(sizes.pdf_pages)]
            images = [text_page(lines) for lines in texts]
            path = pages.save_pdf(images, stem.with_suffix(".pdf"), dpi=DPI)
            text = "\n\n".join("\n".join(lines) for lines in texts)
            samples.append(Sample(kind, path, text, sizes.pdf_pages))
            continue
        samples.append(Sample(kind, path, "\n".join(lines), 1))
    return samples


def letter(seed: int, lines: int, size: tuple[int, int] = A4) -> Image.Image:
    """A page of `lines` lines of 12 pt prose (A4: the everyday scan of a short letter)."""
    text = prose_lines(seed, lines, PT12_PX, size[0] - 2 * MARGIN)
    return _text_page(text, font_px=PT12_PX, size=size)


def letter_png(seed: int, lines: int, size: tuple[int, int] = A4) -> bytes:
    buffer = io.BytesIO()
    letter(seed, lines, size).save(buffer, format="PNG", dpi=(DPI, DPI))
    return buffer.getvalue()


A4_300DPI = (2480, 3508)
SMALL_PRINT = (
    # (kind, page size, type size in px, seed, scanned): the detector's input
    # shrinks with det_limit_side_len, and small type on a big page, worse on a
    # noisy scan, is what it loses first.
    ("6 pt at 200 DPI", A4, 17, 121, False),
    ("8 pt at 200 DPI, scan-like", A4, 22, 131, True),
    ("6 pt at 300 DPI, scan-like", A4_300DPI, 25, 132, True),
    ("5 pt at 200 DPI, scan-like", A4, 14, 133, True),
)


def build_small_print(folder: Path, lines: int = 30, *, quick: bool = False) -> list[Sample]:
    """Small type on full pages, for judging a smaller detector input (bench/tuning.py).

    Scan-like pages get scan_like()'s grey paper, blur, noise and JPEG. `quick`
    puts a few lines on small pages instead: it checks the harness only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for kind, full_size, font_px, seed, scanned in SMALL_PRINT:
        size = QUICK_PAGE if quick else full_size
        text = prose_lines(seed, lines, font_px, size[0] - 2 * MARGIN)
        page = _text_page(text, font_px=font_px, size=size)
        dpi = 300 if full_size == A4_300DPI else DPI
        stem = folder / f"small-{kind.replace(' ', '-').replace(',', '')}"
        if scanned:
            path = stem.with_suffix(".jpg")
            path.write_bytes(scan_like(page, seed))
        else:
            path = stem.with_suffix(".png")
            page.save(path, format="PNG", dpi=(dpi, dpi))
        samples.append(Sample(kind, path, "\n".join(text), 1))
    return samples
