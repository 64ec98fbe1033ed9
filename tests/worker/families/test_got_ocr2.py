"""GOT-OCR 2.0: transformers' class, the processor's own prompt, and attention fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from daemon.settings import HfVlmModel
from daemon.worker.engines.base import EngineError, Runtime
from daemon.worker.engines.hf_vlm import HfVlmEngine
from daemon.worker.families.got_ocr2 import GotOcr2Family
from harness.tiny_models import tiny_model


def test_loads_falling_back_to_eager_and_answers_a_batch(tiny_models_root: Path) -> None:
    """GotOcr2 has no sdpa path: load falls back to eager, records why, and runs pages."""
    folder = tiny_model("got_ocr2", tiny_models_root)
    settings = HfVlmModel(path=str(folder), max_new_tokens=4, batch_size=2, mode="format")
    engine = HfVlmEngine("got", settings, Runtime(device="cpu"))
    info = engine.load()
    assert (info.family, info.attention) == ("got_ocr2", "eager")
    (fallback,) = info.details["attention_fallbacks"]
    assert fallback.startswith("sdpa: ")
    results = engine.recognize([Image.new("RGB", (300, 400), "white")] * 2)
    assert [result.details["mode"] for result in results] == ["format", "format"]
    assert all(result.tokens is not None and 1 <= result.tokens <= 4 for result in results)
    engine.close()


def test_processor_writes_the_ocr_prompt(tiny_models_root: Path) -> None:
    """plain and format modes ask "OCR: " and "OCR with format: " through the processor."""
    folder = str(tiny_model("got_ocr2", tiny_models_root))
    family = GotOcr2Family(mode="format")
    processor = family.load_processor(folder, trust_remote_code=False)
    inputs = family.build_inputs(processor, [Image.new("RGB", (64, 64), "white")], None)  # type: ignore[arg-type]
    prompt = processor.tokenizer.decode(inputs["input_ids"][0])
    assert "OCR with format: " in prompt and prompt.count("<imgpad>") == 256


def test_custom_prompt_is_refused(tiny_models_root: Path) -> None:
    """GOT writes its own prompt; a configured one would be ignored, so loading refuses it."""
    folder = tiny_model("got_ocr2", tiny_models_root)
    engine = HfVlmEngine(
        "got", HfVlmModel(path=str(folder), prompt="Read it"), Runtime(device="cpu")
    )
    with pytest.raises(EngineError, match="got_ocr2 writes its own prompt"):
        engine.load()
