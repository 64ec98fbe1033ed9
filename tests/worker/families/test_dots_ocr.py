"""dots.ocr: a trust_remote_code model folder, its prompts and its answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from daemon.settings import HfVlmModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.hf_vlm import HfVlmEngine
from daemon.worker.families.dots_ocr import PROMPT_LAYOUT_ALL_EN, PROMPT_OCR, DotsOcrFamily
from harness.tiny_models import tiny_model


@pytest.fixture(scope="module")
def dots_folder(tiny_models_root: Path) -> Path:
    return tiny_model("dots_ocr_remote", tiny_models_root)


def test_remote_code_model_loads_and_answers(dots_folder: Path) -> None:
    """With trust_remote_code, the model's own classes load from its folder and run a batch."""
    settings = HfVlmModel(
        path=str(dots_folder), trust_remote_code=True, max_new_tokens=6, batch_size=2
    )
    engine = HfVlmEngine("dots", settings, Runtime(device="cpu"))
    info = engine.load()
    assert info.family == "dots_ocr"
    assert info.details["model_class"] == "DotsOCRForCausalLM"
    assert type(engine.processor).__name__ == "DotsVLProcessor"
    assert (info.dtype, info.attention) == ("float32", "sdpa")
    pages = [Image.new("RGB", (400, 300), "white"), Image.new("RGB", (200, 500), "white")]
    results = engine.recognize(pages)
    assert len(results) == 2
    for result in results:
        assert result.tokens is not None and 1 <= result.tokens <= 6
        assert result.details["mode"] == "layout"
        # Noise is not a layout: the raw answer is kept, and said to be unparsed.
        assert result.details["layout"] == "unparsed"
        assert result.text
    engine.close()


def test_prompt_goes_through_the_models_own_chat_template(dots_folder: Path) -> None:
    """The layout prompt is wrapped in dots' role tokens with its image placeholder."""
    family = DotsOcrFamily()
    processor = family.load_processor(str(dots_folder), trust_remote_code=True)
    text = family.prompt_text(processor)
    assert text.startswith("<|user|><|img|><|imgpad|><|endofimg|>Please output the layout")
    assert text.endswith("<|endofuser|><|assistant|>")


def test_modes_use_the_documented_prompts() -> None:
    """layout (default) and ocr are dots.ocr's prompt_layout_all_en and prompt_ocr."""
    assert DotsOcrFamily().prompt == PROMPT_LAYOUT_ALL_EN
    assert (
        DotsOcrFamily(mode="ocr").prompt
        == PROMPT_OCR
        == "Extract the text content from this image."
    )


def test_layout_answer_becomes_markdown_and_blocks() -> None:
    """A layout answer gives Markdown text and blocks scaled to the page."""
    answer = json.dumps(
        [
            {"bbox": [0, 0, 50, 10], "category": "Section-header", "text": "## Terms"},
            {"bbox": [0, 20, 50, 40], "category": "Text", "text": "Pay in 30 days."},
        ]
    )
    parsed = DotsOcrFamily().parse(answer, page_size=(200, 160), model_size=(100, 80))
    assert parsed.text == "## Terms\n\nPay in 30 days."
    assert parsed.blocks[1].box == (0.0, 40.0, 100.0, 80.0)
    assert parsed.details == {"layout": "json"}


def test_ocr_mode_answer_is_plain_text() -> None:
    """In ocr mode the answer is the text; nothing is parsed as JSON."""
    parsed = DotsOcrFamily(mode="ocr").parse("  [1, 2] plain  ", (10, 10), None)
    assert (parsed.text, parsed.blocks) == ("[1, 2] plain", ())
