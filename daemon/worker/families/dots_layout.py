"""dots.ocr layout answers: a JSON list of cells -> blocks and Markdown.

With its layout prompt, dots.ocr answers
`[{"bbox": [x1, y1, x2, y2], "category": "Text", "text": "..."}, ...]` in
reading order, boxes in the pixels of the image as the model saw it (after
the processor's resize). The Markdown rules follow dots.ocr's own
`layoutjson2md` (rednote-hilab/dots.ocr, dots_ocr/utils/format_transformer.py)
with its `no_page_hf` option on: pictures carry no text, formulas are LaTeX
made into `$$` blocks, tables stay HTML, page headers and footers stay out of
the main text (they remain blocks, so nothing is lost). A truncated answer
(the token limit cut the JSON) keeps every complete cell, as dots.ocr's
`post_process_output` tries to.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from daemon.protocol import Block

Size = tuple[int, int]

MARGIN_CATEGORIES = frozenset({"Page-header", "Page-footer"})


@dataclass(frozen=True, slots=True)
class Layout:
    blocks: tuple[Block, ...]
    markdown: str
    how: str  # "json": the whole answer parsed; "salvaged": complete cells of a cut answer


def _cell(value: Any) -> dict[str, Any] | None:
    """A cell as dots.ocr writes it, or None for anything else."""
    if not isinstance(value, dict):
        return None
    bbox = value.get("bbox")
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(coordinate, int | float) for coordinate in bbox)
    ):
        return None
    if not isinstance(value.get("category"), str):
        return None
    text = value.get("text", "")
    return {
        "bbox": bbox,
        "category": value["category"],
        "text": text if isinstance(text, str) else "",
    }


def parse_cells(answer: str) -> tuple[list[dict[str, Any]], str] | None:
    """The cells of an answer and how they were read, or None when it holds none."""
    try:
        loaded = json.loads(answer)
    except json.JSONDecodeError:
        loaded = None
    if isinstance(loaded, dict):  # "a single JSON object" wrapping the list
        loaded = next((value for value in loaded.values() if isinstance(value, list)), None)
    if isinstance(loaded, list):
        cells = [cell for cell in map(_cell, loaded) if cell is not None]
        if cells:
            return cells, "json"
    salvaged = _salvage(answer)
    return (salvaged, "salvaged") if salvaged else None


def _salvage(answer: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    cells: list[dict[str, Any]] = []
    position = 0
    while (start := answer.find("{", position)) != -1:
        try:
            value, end = decoder.raw_decode(answer, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        cell = _cell(value)
        if cell is not None:
            cells.append(cell)
        position = end
    return cells


def _scaled_box(
    bbox: list[float], page_size: Size, model_size: Size | None
) -> tuple[float, float, float, float]:
    if model_size is None:
        scale_x = scale_y = 1.0
    else:
        scale_x = page_size[0] / model_size[0]
        scale_y = page_size[1] / model_size[1]
    x1, y1, x2, y2 = (float(value) for value in bbox)
    return (
        round(x1 * scale_x, 1),
        round(y1 * scale_y, 1),
        round(x2 * scale_x, 1),
        round(y2 * scale_y, 1),
    )


def formula_markdown(text: str) -> str:
    """A formula cell as a `$$` block (dots.ocr's get_formula_in_markdown, simplified)."""
    text = text.strip()
    if text.startswith("$$") and text.endswith("$$") and len(text) >= 4:
        inner = text[2:-2].strip()
        return text if "$" in inner else f"$$\n{inner}\n$$"
    if text.startswith("\\[") and text.endswith("\\]"):
        return f"$$\n{text[2:-2].strip()}\n$$"
    if re.search(r"\$[^$]+\$", text):  # inline formulas inside text: leave as written
        return text
    return f"$$\n{text.strip('`')}\n$$" if text else ""


def _markdown_item(category: str, text: str) -> str:
    if category == "Picture" or category in MARGIN_CATEGORIES:
        return ""
    if category == "Formula":
        return formula_markdown(text)
    if category in ("List-item", "Table"):
        return text.strip()
    return re.sub(r"\s+", " ", text).strip()


def layout_from_answer(answer: str, page_size: Size, model_size: Size | None) -> Layout | None:
    """Blocks (boxes in page pixels) and Markdown, or None when the answer is not a layout."""
    parsed = parse_cells(answer)
    if parsed is None:
        return None
    cells, how = parsed
    blocks = tuple(
        Block(
            category=cell["category"],
            text="" if cell["category"] == "Picture" else cell["text"],
            box=_scaled_box(cell["bbox"], page_size, model_size),
        )
        for cell in cells
    )
    items = (_markdown_item(block.category, block.text) for block in blocks)
    return Layout(blocks=blocks, markdown="\n\n".join(item for item in items if item), how=how)
