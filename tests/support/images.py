"""Small helpers for tests that compare decoded pages with the images they came from."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageChops, ImageStat


def encoded(image: Image.Image, format: str, **params: Any) -> bytes:
    """`image` saved in `format` (a Pillow format name) with Pillow's save `params`."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    """Mean absolute difference per channel (0..255) of two RGB images of one size."""
    if first.size != second.size:
        raise ValueError(f"sizes differ: {first.size} vs {second.size}")
    difference = ImageChops.difference(first.convert("RGB"), second.convert("RGB"))
    return sum(ImageStat.Stat(difference).mean) / 3


def dark_box(image: Image.Image, threshold: int = 128) -> tuple[int, int, int, int] | None:
    """The bounding box (left, top, right, bottom) of pixels darker than `threshold`."""
    mask = image.convert("L").point(lambda value: 255 if value < threshold else 0)
    return mask.getbbox()
