"""Model families: how each kind of vision-language model is asked and answered.

`detect_family(config)` names the family from a model's config.json;
`build_family(name, mode, prompt)` makes the object the hf_vlm engine uses.
Family modules never import torch or transformers at module level: the remote
engine (no torch) shares their prompts and parsers with the in-process one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from daemon.worker.families.detect import detect_family, family_from_served_name

if TYPE_CHECKING:
    from daemon.worker.families.base import Family

FAMILIES: dict[str, str] = {
    "qwen2_vl": "daemon.worker.families.qwen_vl:Qwen2VlFamily",
    "qwen2_5_vl": "daemon.worker.families.qwen_vl:Qwen25VlFamily",
    "qwen3_vl": "daemon.worker.families.qwen_vl:Qwen3VlFamily",
    "got_ocr2": "daemon.worker.families.got_ocr2:GotOcr2Family",
    "dots_ocr": "daemon.worker.families.dots_ocr:DotsOcrFamily",
    "deepseek_ocr": "daemon.worker.families.deepseek_ocr:DeepseekOcrFamily",
    "generic": "daemon.worker.families.generic:GenericFamily",
}


def build_family(name: str, mode: str | None = None, prompt: str | None = None) -> Family:
    """The family object for a name from FAMILIES (FamilyError for a bad mode/prompt)."""
    module_name, _, class_name = FAMILIES[name].partition(":")
    family_class = getattr(importlib.import_module(module_name), class_name)
    family: Family = family_class(mode, prompt)
    return family


__all__ = ["FAMILIES", "build_family", "detect_family", "family_from_served_name"]
