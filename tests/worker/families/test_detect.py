"""Family recognition from a model's config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.worker.families import FAMILIES, build_family
from daemon.worker.families.detect import detect_family
from harness.tiny_models import tiny_model


@pytest.mark.parametrize(
    ("kind", "family"),
    [
        ("qwen2_vl", "qwen2_vl"),
        ("qwen2_5_vl", "qwen2_5_vl"),
        ("qwen3_vl", "qwen3_vl"),
        ("got_ocr2", "got_ocr2"),
        ("dots_ocr_remote", "dots_ocr"),
        ("deepseek_ocr_remote", "deepseek_ocr"),
    ],
)
def test_family_of_each_tiny_architecture(
    kind: str,
    family: str,
    tiny_models_root: Path,
) -> None:
    """The config.json that save_pretrained writes for each architecture names its family."""
    config = json.loads((tiny_model(kind, tiny_models_root) / "config.json").read_text())
    assert detect_family(config) == family


@pytest.mark.parametrize(
    ("config", "family"),
    [
        # deepseek-ai/DeepSeek-OCR: a model_type it shares with DeepSeek-VL2.
        (
            {
                "model_type": "deepseek_vl_v2",
                "architectures": ["DeepseekOCRForCausalLM"],
                "auto_map": {"AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM"},
            },
            "deepseek_ocr",
        ),
        ({"model_type": "deepseek_vl_v2", "architectures": ["DeepseekVLV2ForCausalLM"]}, "generic"),
        ({"model_type": "deepseek_ocr2"}, "deepseek_ocr"),
        # rednote-hilab/dots.ocr
        (
            {
                "model_type": "dots_ocr",
                "architectures": ["DotsOCRForCausalLM"],
                "auto_map": {"AutoModelForCausalLM": "modeling_dots_ocr.DotsOCRForCausalLM"},
            },
            "dots_ocr",
        ),
        ({"model_type": "qwen3_vl_moe"}, "qwen3_vl"),
        (
            {"model_type": "custom", "architectures": ["Qwen2_5_VLForConditionalGeneration"]},
            "qwen2_5_vl",
        ),
        ({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]}, "generic"),
        ({}, "generic"),
    ],
)
def test_family_from_model_type_architectures_and_auto_map(
    config: dict[str, object], family: str
) -> None:
    """Own-code OCR models are named by their classes; others by model_type; else generic."""
    assert detect_family(config) == family


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_builds_with_its_default_mode(name: str) -> None:
    """Each registered family builds, with a default mode that has a prompt."""
    family = build_family(name)
    assert family.name == name
    assert family.mode in family.prompts
    assert family.prompt == family.prompts[family.mode]
