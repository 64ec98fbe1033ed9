"""One page's invisible text layer, drawn in pixels of the upright page.

Each word (or line, where the engine gives no words) is shown in text render
mode 3 (neither filled nor stroked: invisible, yet found by search and copied)
with its baseline on the bottom edge of its box, the font size the box's height
and horizontal scaling that stretches it to the box's width, turned with the
box's slant: a viewer then highlights the box that holds the word on the page.
Between two words a space is shown, stretched over the gap, so that text
extraction sees the word break (OCRmyPDF does the same); words of scripts
written without spaces get none. Text without boxes (a VLM's Markdown) is laid
in rows over its layout block or, without blocks, over the whole page.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pikepdf import Matrix, Name
from pikepdf.canvas import ContentStreamBuilder

from daemon.page_text import markdown_to_plain, page_plain_text
from daemon.protocol import Line, PageText, Point, Word
from daemon.searchable_pdf import font

INVISIBLE = 3  # text render mode: no fill, no stroke
MIN_SIZE = 0.5  # pixels; a degenerate box still carries its text
ROW_MARGIN = 0.1  # of a row's height, above and below text laid without boxes

Quad = Sequence[Point]


@dataclass(frozen=True, slots=True)
class _Run:
    """Text shown along one baseline: from `origin`, `width` long, `height` tall, at `angle`."""

    text: str
    origin: Point
    width: float
    height: float
    angle: float  # radians, y down


def build(
    text: PageText, upright: tuple[float, float], font_name: Name
) -> tuple[bytes | None, str]:
    """The content stream of the page's text layer, and what it was placed from.

    The mode is "words", "lines", "blocks" or "page"; "none" (and no stream)
    when the page has no text.
    """
    runs, mode = _runs(text, upright)
    if not runs:
        return None, "none"
    stream = ContentStreamBuilder()
    stream.begin_text()
    stream.set_text_rendering(INVISIBLE)
    for run in runs:
        _show(stream, run, font_name)
    stream.end_text()
    return stream.build(), mode


def _runs(text: PageText, upright: tuple[float, float]) -> tuple[list[_Run], str]:
    boxed = [line for line in text.lines if line.box is not None and line.text.strip()]
    if boxed:
        runs: list[_Run] = []
        all_words = True
        for line in boxed:
            from_words = list(_word_runs(line))
            if from_words:
                runs.extend(from_words)
            else:
                all_words = False
                runs.append(_quad_run(_clean(line.text), line.box))  # type: ignore[arg-type]
        return runs, "words" if all_words else "lines"
    blocks = [block for block in text.blocks if block.box is not None and block.text.strip()]
    if blocks:
        runs = []
        for block in blocks:
            x0, y0, x1, y1 = block.box  # type: ignore[misc]
            runs.extend(_rows(markdown_to_plain(block.text), (x0, y0, x1, y1)))
        return runs, "blocks"
    plain = page_plain_text(text)
    if plain:
        return _rows(plain, (0.0, 0.0, float(upright[0]), float(upright[1]))), "page"
    return [], "none"


def _clean(text: str) -> str:
    """One line of text: tabs and line breaks become spaces."""
    return " ".join(text.split())


def _quad_run(text: str, quad: Quad) -> _Run:
    """A run over a quadrilateral (clockwise from top-left): baseline on its bottom edge."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad
    width = (math.dist((x3, y3), (x2, y2)) + math.dist((x0, y0), (x1, y1))) / 2
    height = (math.dist((x0, y0), (x3, y3)) + math.dist((x1, y1), (x2, y2))) / 2
    angle = math.atan2(y2 - y3, x2 - x3) if (x2, y2) != (x3, y3) else 0.0
    return _Run(text, (x3, y3), width, height, angle)


def _word_runs(line: Line) -> Iterator[_Run]:
    """The line's words, with a stretched space between words that the line text separates.

    Nothing when the words do not spell the line's text in order (then the
    line is placed whole).
    """
    words = [word for word in line.words if word.text.strip()]
    if not words:
        return
    separated = _separated(line.text, words)
    if separated is None:
        return
    runs = [_quad_run(_clean(word.text), word.box) for word in words]
    for index, run in enumerate(runs):
        yield run
        if index + 1 < len(runs) and separated[index]:
            yield _space_between(run, runs[index + 1])


def _separated(text: str, words: Sequence[Word]) -> list[bool] | None:
    """For each word, whether whitespace follows it in `text`; None if the words do not match."""
    position = 0
    gaps: list[bool] = []
    for word in words:
        piece = _clean(word.text)
        found = text.find(piece, position)
        if found < 0 or text[position:found].strip():
            return None
        if gaps:
            gaps[-1] = found > position
        position = found + len(piece)
        gaps.append(False)
    return gaps


def _space_between(run: _Run, following: _Run) -> _Run:
    """A space from the end of `run` to the start of `following`, along `run`'s baseline."""
    end = (
        run.origin[0] + run.width * math.cos(run.angle),
        run.origin[1] + run.width * math.sin(run.angle),
    )
    gap = (following.origin[0] - end[0]) * math.cos(run.angle) + (
        following.origin[1] - end[1]
    ) * math.sin(run.angle)
    return _Run(" ", end, max(gap, MIN_SIZE), run.height, run.angle)


def _rows(text: str, area: tuple[float, float, float, float]) -> list[_Run]:
    """Text without boxes: one row per line of text, stacked evenly over `area`."""
    lines = [_clean(line) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return []
    x0, y0, x1, y1 = area
    row_height = (y1 - y0) / len(lines)
    # Each row a little inside its share: a baseline on the page's very edge
    # is dropped by some text extractors (poppler) as off the page.
    return [
        _Run(
            line,
            (x0, y0 + row_height * (index + 1 - ROW_MARGIN)),
            x1 - x0,
            row_height * (1 - 2 * ROW_MARGIN),
            0.0,
        )
        for index, line in enumerate(lines)
    ]


def _show(stream: ContentStreamBuilder, run: _Run, font_name: Name) -> None:
    size = max(run.height, MIN_SIZE)
    natural = font.advance_ems(run.text) * size
    if natural <= 0:
        return
    scale = 100.0 * max(run.width, MIN_SIZE) / natural
    cos, sin = math.cos(run.angle), math.sin(run.angle)
    stream.set_text_font(font_name, round(size, 3))
    stream.set_text_horizontal_scaling(round(scale, 3))
    # Text space is y up; the frame is y down: the text's up is the frame's
    # "up" turned with the baseline.
    x, y = run.origin
    stream.set_text_matrix(
        Matrix(
            round(cos, 6), round(sin, 6), round(sin, 6), round(-cos, 6), round(x, 3), round(y, 3)
        )
    )
    stream.show_text(font.encode(run.text))
