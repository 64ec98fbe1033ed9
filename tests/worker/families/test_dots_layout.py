"""dots.ocr layout answers turned into blocks and Markdown."""

from __future__ import annotations

import json

from daemon.worker.families.dots_layout import formula_markdown, layout_from_answer, parse_cells

CELLS = [
    {"bbox": [10, 5, 300, 20], "category": "Page-header", "text": "ACME Ltd - confidential"},
    {"bbox": [20, 30, 400, 60], "category": "Title", "text": "# Invoice   48213"},
    {"bbox": [20, 70, 400, 120], "category": "Text", "text": "Delivered twelve\nboxes."},
    {"bbox": [20, 130, 200, 230], "category": "Picture"},
    {"bbox": [20, 240, 400, 260], "category": "Formula", "text": "E = mc^2"},
    {
        "bbox": [20, 270, 400, 330],
        "category": "Table",
        "text": "<table><tr><td>1</td></tr></table>",
    },
    {"bbox": [20, 340, 400, 360], "category": "List-item", "text": "- first item  "},
    {"bbox": [10, 380, 300, 395], "category": "Page-footer", "text": "Page 1 of 2"},
]


def test_cells_become_blocks_in_page_pixels() -> None:
    """Boxes in the model's resized pixels are scaled to the page the worker gave."""
    layout = layout_from_answer(json.dumps(CELLS), page_size=(840, 1120), model_size=(420, 560))
    assert layout is not None and layout.how == "json"
    assert [block.category for block in layout.blocks] == [cell["category"] for cell in CELLS]
    assert layout.blocks[1].box == (40.0, 60.0, 800.0, 120.0)
    assert layout.blocks[3].text == ""  # a picture has no text


def test_markdown_follows_dots_rules() -> None:
    """Pictures and page margins stay out; formulas become $$ blocks; tables stay HTML."""
    layout = layout_from_answer(json.dumps(CELLS), page_size=(420, 560), model_size=None)
    assert layout is not None
    assert layout.markdown.split("\n\n") == [
        "# Invoice 48213",
        "Delivered twelve boxes.",
        "$$\nE = mc^2\n$$",
        "<table><tr><td>1</td></tr></table>",
        "- first item",
    ]
    assert "confidential" not in layout.markdown and "Page 1 of 2" not in layout.markdown
    margins = [block.text for block in layout.blocks if block.category.startswith("Page-")]
    assert margins == ["ACME Ltd - confidential", "Page 1 of 2"]


def test_answer_cut_by_the_token_limit_keeps_its_complete_cells() -> None:
    """A truncated JSON list still yields every cell that was written out in full."""
    answer = json.dumps(CELLS[1:3])[:-1] + ', {"bbox": [1, 2, 3'
    layout = layout_from_answer(answer, page_size=(100, 100), model_size=None)
    assert layout is not None and layout.how == "salvaged"
    assert [block.category for block in layout.blocks] == ["Title", "Text"]


def test_answer_that_is_not_a_layout_is_none() -> None:
    """Plain prose has no cells: the caller keeps the raw text."""
    assert layout_from_answer("Just some words.", page_size=(10, 10), model_size=None) is None
    assert parse_cells('[{"bbox": "nowhere", "category": 3}]') is None


def test_object_wrapping_the_cell_list_is_accepted() -> None:
    """ "A single JSON object" holding the list of cells parses too."""
    parsed = parse_cells(json.dumps({"layout": CELLS[:2]}))
    assert parsed is not None and len(parsed[0]) == 2


def test_formula_forms() -> None:
    """$$..$$ and \\[..\\] become $$ blocks; inline $x$ inside text is left alone."""
    assert formula_markdown("$$x+1$$") == "$$\nx+1\n$$"
    assert formula_markdown("\\[ a^2 \\]") == "$$\na^2\n$$"
    assert formula_markdown("where $x$ is") == "where $x$ is"
