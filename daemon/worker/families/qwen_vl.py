"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: chat template, dynamic resolution, plain answers.

All three take any image size: the processor resizes it to a multiple of
patch_size * merge_size within [min_pixels, max_pixels] and reports the grid
it used (`image_grid_thw`), which tells us the size the model saw.
"""

from __future__ import annotations

import math
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
    # The processor's resizing (preprocessor_config.json): sides a multiple of
    # patch x merge, the area within these bounds.
    server_factor: ClassVar[int] = 28
    server_max_pixels: ClassVar[int] = 28 * 28 * 16384

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

    def server_image_size(self, page_size: Size, request: GenerationRequest) -> Size | None:
        # Sent already at the processor's own size, the server keeps the image
        # as it is, so boxes in the answer are in pixels we know.
        return smart_resize(
            page_size,
            min_pixels=request.min_pixels or QWEN_MIN_PIXELS,
            max_pixels=request.max_pixels or self.server_max_pixels,
            factor=self.server_factor,
        )


# Qwen2-VL's and Qwen2.5-VL's image processor (preprocessor_config.json):
# 14-pixel patches merged 2 x 2, 3,136 to 12,845,056 pixels.
QWEN_MIN_PIXELS = 56 * 56


def smart_resize(page_size: Size, *, min_pixels: int, max_pixels: int, factor: int = 28) -> Size:
    """The size Qwen's image processor resizes a page to (its `smart_resize`):
    both sides multiples of `factor`, the area within [min_pixels, max_pixels],
    the aspect ratio kept as closely as that allows."""
    width, height = page_size
    new_height = max(factor, round(height / factor) * factor)
    new_width = max(factor, round(width / factor) * factor)
    if new_height * new_width > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        new_height = max(factor, math.floor(height / beta / factor) * factor)
        new_width = max(factor, math.floor(width / beta / factor) * factor)
    elif new_height * new_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        new_height = math.ceil(height * beta / factor) * factor
        new_width = math.ceil(width * beta / factor) * factor
    return new_width, new_height


class Qwen2VlFamily(QwenVlFamily):
    name: ClassVar[str] = "qwen2_vl"


class Qwen25VlFamily(QwenVlFamily):
    name: ClassVar[str] = "qwen2_5_vl"


class Qwen3VlFamily(QwenVlFamily):
    name: ClassVar[str] = "qwen3_vl"
    # 16-pixel patches merged 2 x 2, up to 16,777,216 pixels (Qwen3-VL's processor).
    server_factor: ClassVar[int] = 32
    server_max_pixels: ClassVar[int] = 16_777_216
