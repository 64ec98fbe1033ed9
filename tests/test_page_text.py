"""A page's text without markup, and the frame its boxes are in."""

from __future__ import annotations

from daemon.page_text import markdown_to_plain, upright_size


def test_markdown_tables_and_html_lose_their_markup() -> None:
    """Pipes, separator rows, bold, headings and HTML tables become plain text with tabs."""
    assert markdown_to_plain("| a | b |\n|:--|--:|\n| **c** | d |") == "a\tb\nc\td"
    assert markdown_to_plain("<table><tr><td>x</td><td>y</td></tr></table>") == "x\ty"
    assert markdown_to_plain("# Title\n![logo](x.png) 5 < 6") == "Title\nlogo 5 < 6"


def test_the_upright_frame_is_the_engines_or_the_given_image_turned() -> None:
    """The engine's upright size wins; without it a page turned 90 degrees swaps width and height."""
    assert upright_size({"upright_size": [900, 1240]}, 1240, 900, 90) == (900, 1240)
    assert upright_size({}, 1240, 900, 90) == (900, 1240)
    assert upright_size({}, 1240, 900, 180) == (1240, 900)
