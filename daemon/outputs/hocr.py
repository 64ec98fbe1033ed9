"""NAME.ocr.hocr: the result as hOCR 1.2 (pages, lines and words with bbox and confidence).

Coordinates are pixels of the upright page, as in the `.ocr.json`. Lines and
words carry `bbox` (the axis-aligned bounds of their box) and `x_wconf` (the
confidence in percent); a layout block becomes an `ocr_carea` with its
bbox; text without boxes (a VLM's Markdown) becomes `ocr_line`s without a
bbox inside its page, so that nothing recognised is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from daemon import __version__
from daemon.page_text import markdown_to_plain, page_plain_text, upright_size
from daemon.protocol import DocumentResult, Line, PageResult, Point, Word

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
<head>
<title>{title}</title>
<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
<meta name="ocr-system" content="ocr-inbox {version}"/>
<meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_line ocrx_word"/>
<meta name="ocr-number-of-pages" content="{pages}"/>
</head>
<body>
"""
_TAIL = "</body>\n</html>\n"


def hocr(result: DocumentResult, name: str) -> str:
    """The whole document as hOCR."""
    parts = [_HEAD.format(title=escape(name), version=__version__, pages=len(result.pages))]
    for page in result.pages:
        parts.extend(_page(page, name))
    parts.append(_TAIL)
    return "".join(parts)


def _bbox(points: Sequence[Point]) -> str:
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    return f"bbox {round(min(xs))} {round(min(ys))} {round(max(xs))} {round(max(ys))}"


def _confidence(value: float | None) -> str:
    return f"; x_wconf {round(value * 100)}" if value is not None else ""


def _page(page: PageResult, name: str) -> list[str]:
    text = page.text
    width, height = upright_size(text.details, page.width, page.height, text.rotation)
    number = page.index + 1
    image = escape(name, {'"': "&quot;"})
    title = f"image &quot;{image}&quot;; bbox 0 0 {width} {height}; ppageno {page.index}"
    out = [f'<div class="ocr_page" id="page_{number}" title="{title}">\n']
    boxed = [line for line in text.lines if line.box is not None]
    if boxed:
        out.extend(_line(line, f"{number}_{index + 1}") for index, line in enumerate(boxed))
    elif any(block.box is not None for block in text.blocks):
        for index, block in enumerate(text.blocks):
            area = f"block_{number}_{index + 1}"
            title = _bbox(_corners(block.box)) if block.box is not None else ""
            out.append(f'<div class="ocr_carea" id="{area}" title="{title}">\n')
            out.extend(_unboxed_lines(markdown_to_plain(block.text), f"{number}_{index + 1}"))
            out.append("</div>\n")
    else:
        out.extend(_unboxed_lines(page_plain_text(text), str(number)))
    out.append("</div>\n")
    return out


def _corners(box: tuple[float, float, float, float]) -> tuple[Point, Point]:
    return ((box[0], box[1]), (box[2], box[3]))


def _line(line: Line, ident: str) -> str:
    assert line.box is not None
    title = _bbox(line.box) + _confidence(line.confidence)
    inner = (
        " ".join(_word(word, f"{ident}_{index + 1}") for index, word in enumerate(line.words))
        if line.words
        else escape(line.text)
    )
    return f'<span class="ocr_line" id="line_{ident}" title="{title}">{inner}</span>\n'


def _word(word: Word, ident: str) -> str:
    title = _bbox(word.box) + _confidence(word.confidence)
    return f'<span class="ocrx_word" id="word_{ident}" title="{title}">{escape(word.text)}</span>'


def _unboxed_lines(text: str, ident: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [
        f'<span class="ocr_line" id="line_{ident}_{index + 1}">{escape(line)}</span>\n'
        for index, line in enumerate(lines)
    ]
