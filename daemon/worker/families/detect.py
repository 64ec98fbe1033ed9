"""Which family a model belongs to, from its config.json (no torch, no transformers).

`model_type` decides for transformers' own classes. Models with their own
code are named by `architectures` and `auto_map`, because their model_type
can be shared with non-OCR relatives (DeepSeek-OCR says `deepseek_vl_v2`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODEL_TYPES: dict[str, str] = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
    "got_ocr2": "got_ocr2",
    "dots_ocr": "dots_ocr",
    "deepseek_ocr": "deepseek_ocr",
    "deepseek_ocr2": "deepseek_ocr",
}

# Lower-cased fragments of architecture or auto_map class names.
# OCR models with their own code: these win over model_type.
OWN_CODE_NAMES: tuple[tuple[str, str], ...] = (
    ("dotsocr", "dots_ocr"),
    ("dots_ocr", "dots_ocr"),
    ("deepseekocr", "deepseek_ocr"),
    ("deepseek_ocr", "deepseek_ocr"),
)
# Architectures of transformers' classes, for configs with an unusual model_type.
ARCHITECTURE_NAMES: tuple[tuple[str, str], ...] = (
    ("gotocr2", "got_ocr2"),
    ("qwen3vl", "qwen3_vl"),
    ("qwen2_5_vl", "qwen2_5_vl"),
    ("qwen2vl", "qwen2_vl"),
)


def _names(config: Mapping[str, Any]) -> str:
    architectures = config.get("architectures") or []
    auto_map = config.get("auto_map") or {}
    values = [str(name) for name in architectures]
    if isinstance(auto_map, Mapping):
        values.extend(str(value) for value in auto_map.values())
    return " ".join(values).lower()


def detect_family(config: Mapping[str, Any]) -> str:
    """The family name for a model's config.json contents; `generic` when unknown."""
    names = _names(config)
    for fragment, family in OWN_CODE_NAMES:
        if fragment in names:
            return family
    model_type = str(config.get("model_type", "")).lower()
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    for fragment, family in ARCHITECTURE_NAMES:
        if fragment in names:
            return family
    return "generic"


# Fragments of a served model's name (lower-cased, without "-", "_", "." and
# "/"), most specific first: "Qwen/Qwen2.5-VL-7B-Instruct" -> "qwen25vl...".
SERVED_NAMES: tuple[tuple[str, str], ...] = (
    ("dotsocr", "dots_ocr"),
    ("deepseekocr", "deepseek_ocr"),
    ("gotocr", "got_ocr2"),
    ("qwen3vl", "qwen3_vl"),
    ("qwen25vl", "qwen2_5_vl"),
    ("qwen2vl", "qwen2_vl"),
)


def family_from_served_name(name: str) -> str:
    """The family of a model known only by the name a server gives it; `generic` when unknown."""
    squashed = "".join(char for char in name.lower() if char not in "-_./ ")
    for fragment, family in SERVED_NAMES:
        if fragment in squashed:
            return family
    return "generic"
