"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: chat template, dynamic resolution, plain answers.

All three take any image size: the processor resizes it to a multiple of
patch_size * merge_size within [min_pixels, max_pixels] and reports the grid
it used (`image_grid_thw`), which tells us the size the model saw.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from daemon.worker.families.base import Family, GenerationRequest, Parsed, Size

QWEN_PROMPTS: dict[str, str] = {
    "markdown": (
        "Read all the text in this image and return it as Markdown in reading order: "
        "keep headings, lists and tables (as Markdown tables). "
        "Output only the document's text, with no comments."
    ),
    "plain": Family.prompts["plain"],
}

# A whole answer wrapped in one fenced block: ```markdown ... ```
_FENCED = re.compile(r"^\s*```[a-zA-Z]*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


def unfence(text: str) -> str:
    """Qwen models like to wrap a Markdown answer in a code fence; the fence is not text."""
    match = _FENCED.match(text)
    return match.group("body") if match else text


class QwenVlFamily(Family):
    name: ClassVar[str] = "qwen2_vl"
    prompts: ClassVar[dict[str, str]] = QWEN_PROMPTS
    default_mode: ClassVar[str] = "markdown"
    auto_classes: ClassVar[tuple[str, ...]] = ("AutoModelForImageTextToText",)
    stop_tokens: ClassVar[tuple[str, ...]] = ("<|im_end|>",)

    def image_kwargs(self, processor: Any, request: GenerationRequest) -> dict[str, Any]:
        if request.min_pixels is None and request.max_pixels is None:
            return {}
        size = dict(getattr(processor.image_processor, "size", None) or {})
        if request.min_pixels is not None:
            size["shortest_edge"] = request.min_pixels
        if request.max_pixels is not None:
            size["longest_edge"] = request.max_pixels
        return {"size": size}

    def model_sizes(self, processor: Any, inputs: Any, count: int) -> list[Size | None]:
        grid = inputs.get("image_grid_thw")
        patch = getattr(processor.image_processor, "patch_size", None)
        if grid is None or patch is None or len(grid) != count:
            return [None] * count
        # image_grid_thw rows are (frames, height, width) in patches.
        return [(int(row[2]) * int(patch), int(row[1]) * int(patch)) for row in grid]

    def parse(self, text: str, page_size: Size, model_size: Size | None) -> Parsed:
        return Parsed(text=unfence(text.strip()).strip())


class Qwen2VlFamily(QwenVlFamily):
    name: ClassVar[str] = "qwen2_vl"


class Qwen25VlFamily(QwenVlFamily):
    name: ClassVar[str] = "qwen2_5_vl"


class Qwen3VlFamily(QwenVlFamily):
    name: ClassVar[str] = "qwen3_vl"
