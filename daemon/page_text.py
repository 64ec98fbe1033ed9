"""A page's text as the outputs need it: without markup, and the frame its boxes are in.

Shared by the supervisor's outputs (NAME.ocr.txt, .hocr, .json) and the
worker's searchable PDF, so it lives at the top level and imports nothing
heavy.

Plain text: for NAME.ocr.txt and the PDF's text layer.

Engines that give lines (the embedded engine) already give plain text. A VLM
gives Markdown, sometimes with HTML tables (dots.ocr): its markup is taken off
here so that a search for "Crates 7" finds "| **Crates** | 7 |". The rules are
deliberately few: heading markers, bold, table pipes and separator rows,
images and links, HTML tags. Anything else stays as written.
"""

from __future__ import annotations

import re
from typing import Any

from daemon.protocol import PageText

_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?>")
_HTML_BREAK = re.compile(r"</?(tr|p|div|br|h[1-6]|li)(\s[^<>]*)?/?>", re.IGNORECASE)
_HTML_CELL_END = re.compile(r"</t[dh]>", re.IGNORECASE)
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'", "&nbsp;": " "}


def page_plain_text(text: PageText) -> str:
    """The page's text as plain text: as recognised, or its Markdown with the markup off."""
    if text.lines:
        return text.text.strip()
    return markdown_to_plain(text.text)


def markdown_to_plain(markdown: str) -> str:
    """Markdown (with the HTML some VLMs mix in) to plain text, line by line."""
    html = _HTML_CELL_END.sub("\t", markdown)
    html = _HTML_BREAK.sub("\n", html)
    html = _HTML_TAG.sub("", html)
    for entity, character in _ENTITIES.items():
        html = html.replace(entity, character)
    lines = []
    for line in html.splitlines():
        if _TABLE_SEPARATOR.match(line):
            continue
        line = _HEADING.sub("", line)
        line = _IMAGE.sub(r"\1", line)
        line = _LINK.sub(r"\1", line)
        line = _BOLD.sub(r"\2", line)
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1:
            line = "\t".join(cell.strip() for cell in stripped[1:-1].split("|"))
        lines.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def upright_size(
    details: dict[str, Any], width: int, height: int, rotation: int
) -> tuple[int, int]:
    """The upright page's size: what the engine says, else the given image turned by `rotation`."""
    reported = details.get("upright_size")
    if isinstance(reported, list | tuple) and len(reported) == 2:
        return int(reported[0]), int(reported[1])
    return (height, width) if rotation % 180 else (width, height)
