"""DeepSeek-OCR: its infer() entry point, prompts, and grounded Markdown answers."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from daemon.settings import HfVlmModel
from daemon.worker.engines.base import Runtime
from daemon.worker.engines.hf_vlm import HfVlmEngine
from daemon.worker.families.deepseek_ocr import DeepseekOcrFamily, clean_markdown, grounded_blocks
from harness.tiny_models import tiny_model

GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 120]]<|/det|>\n# Invoice 48213\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 200, 500, 260], [520, 200, 900, 260]]<|/det|>\n"
    "Delivered twelve boxes.\n\n\n\n"
    "<|ref|>image<|/ref|><|det|>[[0, 300, 999, 999]]<|/det|>\n"
    "<|ref|>equation<|/ref|><|det|>[[10, 10, 20, 20]]<|/det|>\n\\[ x = 1 \\quad (3) \\]"
)


def test_infer_style_checkpoint_loads_and_answers(tiny_models_root: Path) -> None:
    """A checkpoint with a tokenizer, no processor and its own infer() is run through infer()."""
    folder = tiny_model("deepseek_ocr_remote", tiny_models_root)
    settings = HfVlmModel(path=str(folder), trust_remote_code=True, batch_size=2, mode="free")
    engine = HfVlmEngine("deepseek", settings, Runtime(device="cpu"))
    info = engine.load()
    assert info.family == "deepseek_ocr"
    assert info.details["model_class"] == "DeepseekOCRForCausalLM"
    assert DeepseekOcrFamily.uses_infer(engine.model, engine.processor)
    results = engine.recognize([Image.new("RGB", (300, 200), "white")] * 3)
    assert len(results) == 3
    assert all(result.text and result.tokens for result in results)
    assert all(result.details["hit_token_limit"] is None for result in results)
    engine.close()


def test_prompts_are_the_model_cards() -> None:
    """markdown (default) and free modes send the model card's prompts after <image>."""
    assert DeepseekOcrFamily().prompt_text(None) == (
        "<image>\n<|grounding|>Convert the document to markdown."
    )
    assert DeepseekOcrFamily(mode="free").prompt_text(None) == "<image>\nFree OCR."


def test_grounded_answer_becomes_markdown_without_tags() -> None:
    """The Markdown drops ref/det tags, equation numbers and runs of blank lines."""
    text = clean_markdown(GROUNDED)
    assert "<|ref|>" not in text and "<|det|>" not in text
    assert text == "# Invoice 48213\n\nDelivered twelve boxes.\n\n\\[x = 1\\]"


def test_grounded_regions_become_blocks_in_page_pixels() -> None:
    """Each region is a block: its label, its box from the 0..999 grid, the text after it."""
    blocks = grounded_blocks(GROUNDED, page_size=(999, 1998))
    assert [block.category for block in blocks] == ["title", "text", "image", "equation"]
    assert blocks[0].box == (100.0, 100.0, 900.0, 240.0)
    assert blocks[0].text == "# Invoice 48213"
    assert blocks[1].box == (100.0, 400.0, 900.0, 520.0)  # two boxes: their union
    assert blocks[2].text == ""  # pictures carry no text


def test_free_ocr_answer_is_text() -> None:
    """An answer without grounding tags is the page text, with no blocks."""
    parsed = DeepseekOcrFamily(mode="free").parse("Invoice 48213\n", (10, 10), None)
    assert (parsed.text, parsed.blocks) == ("Invoice 48213", ())
