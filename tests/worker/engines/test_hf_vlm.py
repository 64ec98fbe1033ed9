"""The hf_vlm engine on tiny real-architecture models, on the CPU.

The answers of random weights are noise, so these tests assert on what must
hold whatever the words: metadata, page and token counts, batching, padding,
and the errors for empty and degenerate answers and for missing models.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from daemon.protocol import PageText
from daemon.settings import HfVlmModel
from daemon.worker.engines import build_engine
from daemon.worker.engines.base import (
    DegenerateOutputError,
    EmptyOutputError,
    EngineError,
    ModelNotFoundError,
    Runtime,
)
from daemon.worker.engines.hf_vlm import HfVlmEngine
from harness.pages import render_page
from harness.tiny_models import tiny_model
from tests.support.tiny_model_fixtures import forget_imported_code

CPU = Runtime(device="cpu")
MAX_NEW_TOKENS = 6


def pages(count: int) -> list[Image.Image]:
    """Pages of different shapes, so their prompts differ in length within a batch."""
    shapes = [(600, 850), (900, 300), (120, 120), (300, 700)]
    return [
        render_page(["Invoice 48213", f"page {index}"], width=w, height=h, font_px=24, margin=10)
        for index, (w, h) in zip(range(count), shapes * 2, strict=False)
    ]


@pytest.fixture(scope="module")
def qwen2_vl(tiny_models_root: Path) -> Path:
    return tiny_model("qwen2_vl", tiny_models_root)


@pytest.fixture(scope="module")
def engine(qwen2_vl: Path) -> Iterator[HfVlmEngine]:
    settings = HfVlmModel(path=str(qwen2_vl), max_new_tokens=MAX_NEW_TOKENS, batch_size=2)
    loaded = HfVlmEngine("tiny-qwen2-vl", settings, CPU)
    loaded.load()
    yield loaded
    loaded.close()


class GenerateCalls:
    """Wraps the real model.generate and records each call's batch."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.original = model.generate
        self.calls: list[dict[str, Any]] = []

    def __enter__(self) -> GenerateCalls:
        def counting(**kwargs: Any) -> Any:
            self.calls.append(
                {
                    "batch": int(kwargs["input_ids"].shape[0]),
                    "attention_mask": kwargs["attention_mask"].clone(),
                    "do_sample": kwargs.get("do_sample"),
                    "max_new_tokens": kwargs.get("max_new_tokens"),
                }
            )
            return self.original(**kwargs)

        self.model.generate = counting
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.generate  # back to the class's method


def test_build_engine_makes_an_hf_vlm_engine(qwen2_vl: Path) -> None:
    """The registry maps engine = "hf_vlm" to HfVlmEngine (not loaded yet)."""
    engine = build_engine("m", HfVlmModel(path=str(qwen2_vl)), CPU)
    assert isinstance(engine, HfVlmEngine)
    assert engine.model is None


def test_load_reports_family_dtype_and_attention_on_cpu(engine: HfVlmEngine) -> None:
    """EngineInfo names the engine, family and what the CPU runs: fp32 and sdpa."""
    info = engine.info
    assert info is not None
    assert (info.engine, info.model, info.family) == ("hf_vlm", "tiny-qwen2-vl", "qwen2_vl")
    assert (info.device, info.dtype, info.attention) == ("cpu", "float32", "sdpa")
    assert info.details["model_class"] == "Qwen2VLForConditionalGeneration"
    assert info.details["max_new_tokens"] == MAX_NEW_TOKENS
    assert info.details["batch_size"] == 2
    assert info.details["attention_fallbacks"] == []
    assert info.details["torch"] and info.details["transformers"]
    assert Path(info.details["path"]).is_dir()


def test_recognize_returns_one_page_text_per_image_within_the_token_limit(
    engine: HfVlmEngine,
) -> None:
    """Each page gets a PageText whose token count is what was generated, at most the limit."""
    results = engine.recognize(pages(3))
    assert len(results) == 3
    for result in results:
        assert isinstance(result, PageText)
        assert result.text.strip()
        assert result.tokens is not None and 1 <= result.tokens <= MAX_NEW_TOKENS
        if result.details["hit_token_limit"]:
            assert result.tokens == MAX_NEW_TOKENS
        width, height = result.details["model_image_size"]
        assert width % 28 == 0 and height % 28 == 0  # Qwen2-VL resizes to 28-pixel multiples


def test_three_pages_with_batch_size_two_take_two_greedy_generate_calls(
    engine: HfVlmEngine,
) -> None:
    """Pages are batched into one generate call per batch_size pages, greedy decoding."""
    with GenerateCalls(engine.model) as recorder:
        engine.recognize(pages(3))
    assert [call["batch"] for call in recorder.calls] == [2, 1]
    assert all(call["do_sample"] is False for call in recorder.calls)
    assert all(call["max_new_tokens"] == MAX_NEW_TOKENS for call in recorder.calls)


def test_batched_prompts_are_padded_on_the_left(engine: HfVlmEngine) -> None:
    """A shorter prompt in a batch is padded before its start, so answers begin aligned."""
    assert engine.processor.tokenizer.padding_side == "left"
    with GenerateCalls(engine.model) as recorder:
        engine.recognize([pages(2)[0], pages(3)[2]])  # a large and a tiny page: unequal prompts
    mask = recorder.calls[0]["attention_mask"]
    lengths = mask.sum(dim=1)
    assert lengths[0] != lengths[1]
    shorter = int(lengths.argmin())
    assert mask[shorter, 0] == 0 and mask[shorter, -1] == 1
    assert bool(mask[:, -1].all())


def test_answer_ending_on_its_end_token_counts_it_and_did_not_hit_the_limit(
    tiny_models_root: Path,
) -> None:
    """An answer that stops on the end token: tokens include it, hit_token_limit is False."""
    folder = tiny_model("qwen2_vl", tiny_models_root, "brief")
    engine = HfVlmEngine("brief", HfVlmModel(path=str(folder), batch_size=2), CPU)
    engine.load()  # max_new_tokens stays at its default, 2048
    results = engine.recognize(pages(2))
    engine.close()
    assert len(results) == 2
    for result in results:
        assert result.details["hit_token_limit"] is False
        assert result.tokens is not None and 2 <= result.tokens <= 8
        assert result.text.strip()


def test_empty_answer_raises_empty_output_error(tiny_models_root: Path) -> None:
    """A model that can only say its end token yields EmptyOutputError, not an empty page."""
    folder = tiny_model("qwen2_vl", tiny_models_root, "empty")
    engine = HfVlmEngine("mute", HfVlmModel(path=str(folder), max_new_tokens=8), CPU)
    engine.load()
    with pytest.raises(EmptyOutputError, match="'mute' produced no text"):
        engine.recognize(pages(1))
    engine.close()


def test_answer_looping_to_the_limit_raises_degenerate_output_error(
    tiny_models_root: Path,
) -> None:
    """`!!!!...` to the token limit (all-tied logits) yields DegenerateOutputError."""
    folder = tiny_model("qwen2_vl", tiny_models_root, "degenerate")
    engine = HfVlmEngine("stuck", HfVlmModel(path=str(folder), max_new_tokens=40), CPU)
    engine.load()
    with pytest.raises(
        DegenerateOutputError, match="repeats a 1-token phrase until the limit of 40"
    ):
        engine.recognize(pages(1))
    engine.close()


def test_missing_local_folder_raises_model_not_found(tmp_path: Path) -> None:
    """A path that is not there names the model and the path."""
    missing = tmp_path / "no-such-model"
    engine = HfVlmEngine("absent", HfVlmModel(path=str(missing)), CPU)
    with pytest.raises(ModelNotFoundError, match=f"'absent': no model folder at {missing}"):
        engine.load()


def test_uncached_hub_id_names_the_command_that_fetches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub id not in the HF cache fails without download and says `hf download ID`."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = HfVlmModel(path="ocr-inbox-tests/no-such-model", revision="v1")
    engine = HfVlmEngine("remote-one", settings, CPU)
    with pytest.raises(ModelNotFoundError) as caught:
        engine.load()
    message = str(caught.value)
    assert "'remote-one'" in message
    assert "hf download ocr-inbox-tests/no-such-model --revision v1" in message
    assert "downloads are off" in message


def test_own_code_needs_trust_remote_code(tiny_models_root: Path) -> None:
    """A model whose config names its own code is refused until trust_remote_code is set."""
    folder = tiny_model("dots_ocr_remote", tiny_models_root)
    engine = HfVlmEngine("dots", HfVlmModel(path=str(folder)), CPU)
    with pytest.raises(
        EngineError, match=re.escape("set trust_remote_code = true under [models.dots]")
    ):
        engine.load()


def test_explicit_cuda_device_without_a_gpu_is_a_load_error(qwen2_vl: Path) -> None:
    """worker.device = "cuda" on a machine without one fails the load, naming why."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    engine = HfVlmEngine("gpu-only", HfVlmModel(path=str(qwen2_vl)), Runtime(device="cuda"))
    with pytest.raises(EngineError, match="no GPU"):
        engine.load()


def test_attention_that_fails_its_forward_pass_falls_back_with_the_reason(
    tiny_models_root: Path,
) -> None:
    """A model that loads with sdpa but cannot run it is reloaded with eager; why is kept."""
    folder = tiny_model("dots_ocr_remote", tiny_models_root, "sdpa_fails")
    settings = HfVlmModel(path=str(folder), trust_remote_code=True, max_new_tokens=2)
    engine = HfVlmEngine("fragile", settings, CPU)
    info = engine.load()
    assert info.attention == "eager"
    (reason,) = info.details["attention_fallbacks"]
    assert reason.startswith("sdpa: RuntimeError: CUDA error: no kernel image is available")
    assert engine.recognize(pages(1))[0].tokens
    engine.close()


def test_model_that_runs_with_no_attention_is_a_load_error(
    tiny_models_root: Path,
    tmp_path: Path,
) -> None:
    """When every candidate fails its forward pass, loading fails and gives each reason."""
    folder = tmp_path / f"eager_fails_remote-{tmp_path.name}"
    shutil.copytree(tiny_model("dots_ocr_remote", tiny_models_root, "sdpa_fails"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["fail_with_attention"] = "eager"
    (folder / "config.json").write_text(json.dumps(config))
    settings = HfVlmModel(path=str(folder), trust_remote_code=True, attention="eager")
    engine = HfVlmEngine("fragile", settings, CPU)
    with pytest.raises(EngineError, match=r"runs with none of \['eager'\] on cpu") as caught:
        try:
            engine.load()
        finally:
            forget_imported_code(folder)
    assert "eager: RuntimeError: CUDA error: no kernel image" in str(caught.value)
    assert engine.model is None


def test_explicit_eager_attention_is_used(qwen2_vl: Path) -> None:
    """attention = "eager" loads with eager attention and reports it."""
    settings = HfVlmModel(path=str(qwen2_vl), attention="eager", max_new_tokens=2)
    engine = HfVlmEngine("eager", settings, CPU)
    info = engine.load()
    assert info.attention == "eager"
    assert engine.recognize(pages(1))[0].tokens
    engine.close()


def test_unknown_mode_is_a_load_error(qwen2_vl: Path) -> None:
    """A mode the family does not have fails the load and lists the modes it has."""
    engine = HfVlmEngine("odd", HfVlmModel(path=str(qwen2_vl), mode="poetry"), CPU)
    with pytest.raises(EngineError, match=r"no mode 'poetry'.*markdown"):
        engine.load()


def test_recognize_before_load_is_an_engine_error(qwen2_vl: Path) -> None:
    """Calling recognize on an engine that was never loaded says so."""
    engine = HfVlmEngine("cold", HfVlmModel(path=str(qwen2_vl)), CPU)
    with pytest.raises(EngineError, match="not loaded"):
        engine.recognize(pages(1))


def test_memory_readings_are_empty_on_cpu(engine: HfVlmEngine) -> None:
    """On the CPU there is no accelerator memory to report, and resets are no-ops."""
    engine.reset_peak()
    engine.free_memory()
    assert engine.memory() == ()


def test_close_releases_the_model(qwen2_vl: Path) -> None:
    """After close() the engine holds no model and refuses to recognise."""
    engine = HfVlmEngine("short-lived", HfVlmModel(path=str(qwen2_vl), max_new_tokens=2), CPU)
    engine.load()
    engine.close()
    assert engine.model is None
    with pytest.raises(EngineError):
        engine.recognize(pages(1))
