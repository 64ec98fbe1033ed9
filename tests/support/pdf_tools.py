"""What a reader of a PDF sees, through poppler and qpdf (skip without them; fail under REQUIRE_SYSTEM_TOOLS=1)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from harness.pages import DrawnLine
from tests.support.tools import require_tool

_XHTML = "{http://www.w3.org/1999/xhtml}"


@dataclass(frozen=True)
class ExtractedWord:
    page: int
    text: str
    box: tuple[float, float, float, float]  # points, y down, on the page as shown
    page_size: tuple[float, float]  # points


def pdftotext(path: Path) -> str:
    """The text poppler extracts (pages end with a form feed)."""
    tool = require_tool("pdftotext")
    return subprocess.run(
        [tool, "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def pdftotext_words(path: Path) -> list[ExtractedWord]:
    """`pdftotext -bbox`: each word with its box in points on the page as shown."""
    tool = require_tool("pdftotext")
    html = subprocess.run(
        [tool, "-bbox", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True
    ).stdout
    root = ElementTree.fromstring(html)
    found = []
    for index, page in enumerate(root.iter(f"{_XHTML}page")):
        size = (float(page.attrib["width"]), float(page.attrib["height"]))
        for word in page.iter(f"{_XHTML}word"):
            box = tuple(float(word.attrib[key]) for key in ("xMin", "yMin", "xMax", "yMax"))
            found.append(ExtractedWord(index, word.text or "", box, size))  # type: ignore[arg-type]
    return found


def qpdf_check(path: Path) -> subprocess.CompletedProcess[str]:
    """`qpdf --check`: exit 0 and no warnings for a clean file."""
    tool = require_tool("qpdf")
    return subprocess.run([tool, "--check", str(path)], capture_output=True, text=True)


def render_pages(path: Path, folder: Path, dpi: int = 72) -> list[Image.Image]:
    """Every page rendered by pdftoppm, in order."""
    tool = require_tool("pdftoppm")
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / path.stem
    subprocess.run([tool, "-r", str(dpi), "-png", str(path), str(prefix)], check=True)
    rendered = sorted(
        folder.glob(f"{path.stem}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1])
    )
    return [Image.open(page).convert("RGB") for page in rendered]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def answer_for(match: str, lines: list[DrawnLine]) -> dict[str, object]:
    """A test engine's known answer (settings) that reads `lines` where they were drawn."""
    return {
        "match": match,
        "lines": [
            {
                "text": line.text,
                "box": list(line.box),
                "words": [{"text": word.text, "box": list(word.box)} for word in line.words],
            }
            for line in lines
        ],
    }
