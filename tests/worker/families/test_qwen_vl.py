"""Qwen2.5-VL and Qwen3-VL through transformers' own classes; Qwen answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from daemon.settings import HfVlmModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.hf_vlm import HfVlmEngine
from daemon.worker.families.qwen_vl import Qwen2VlFamily, unfence
from harness.tiny_models import tiny_model


@pytest.mark.parametrize(
    ("kind", "model_class", "multiple"),
    [
        ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", 28),
        ("qwen3_vl", "Qwen3VLForConditionalGeneration", 32),
    ],
)
def test_loads_and_answers_a_batch(
    kind: str,
    model_class: str,
    multiple: int,
    tiny_models_root: Path,
) -> None:
    """The family is recognised, the model loads on CPU (fp32, sdpa) and answers each page."""
    settings = HfVlmModel(
        path=str(tiny_model(kind, tiny_models_root)), max_new_tokens=4, batch_size=2
    )
    engine = HfVlmEngine(kind, settings, Runtime(device="cpu"))
    info = engine.load()
    assert (info.family, info.details["model_class"]) == (kind, model_class)
    assert (info.dtype, info.attention) == ("float32", "sdpa")
    results = engine.recognize(
        [Image.new("RGB", (500, 700), "white"), Image.new("RGB", (90, 60), "gray")]
    )
    assert len(results) == 2
    for result in results:
        assert result.tokens is not None and 1 <= result.tokens <= 4
        width, height = result.details["model_image_size"]
        assert width % multiple == 0 and height % multiple == 0
    engine.close()


def test_max_pixels_setting_bounds_the_image_the_model_sees(tiny_models_root: Path) -> None:
    """min_pixels / max_pixels from the settings override the processor's own range."""
    folder = tiny_model("qwen2_vl", tiny_models_root)
    settings = HfVlmModel(
        path=str(folder), max_new_tokens=2, max_pixels=4 * 28 * 28, min_pixels=28 * 28
    )
    engine = HfVlmEngine("small", settings, Runtime(device="cpu"))
    engine.load()
    (result,) = engine.recognize([Image.new("RGB", (1000, 1000), "white")])
    width, height = result.details["model_image_size"]
    assert width * height <= 4 * 28 * 28
    engine.close()


def test_chat_template_carries_the_prompt_and_one_image(tiny_models_root: Path) -> None:
    """The prompt goes through the model's chat template with one image placeholder."""
    family = Qwen2VlFamily(mode="plain")
    processor = family.load_processor(
        str(tiny_model("qwen2_vl", tiny_models_root)), trust_remote_code=False
    )
    text = family.prompt_text(processor)
    assert text.count("<|image_pad|>") == 1
    assert "Read all the text in this image, in reading order." in text
    assert text.endswith("<|im_start|>assistant\n")


def test_fenced_markdown_answer_is_unwrapped() -> None:
    """A whole answer inside ```markdown fences loses the fences, keeps its content."""
    assert unfence("```markdown\n# Title\n\ntext\n```") == "# Title\n\ntext"
    assert unfence("plain `code` text") == "plain `code` text"
    assert Qwen2VlFamily().parse("```\nA\n```\n", (1, 1), None).text == "A"
